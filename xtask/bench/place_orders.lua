-- POST /orders, one copy an order, round the books bench-0 to bench-<books - 1> and over
-- a thousand users. Argument: the number of books.
local books = 1
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  books = tonumber(args[1])
end

function request()
  counter = counter + 1
  local body = string.format('{"bookId":"bench-%d","quantity":1,"userId":"user-%d"}',
    counter % books, counter % 1000)
  return wrk.format("POST", "/orders", headers, body)
end
