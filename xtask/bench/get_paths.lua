-- GET, round the paths listed one a line in the file named by the argument.
local paths = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[counter % #paths + 1])
end
