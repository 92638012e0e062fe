-- The three calls that one order makes, sent straight to the Storage Service: record the
-- order, take its stock, confirm it. Each call is sent only after the answer to the one
-- before it, which queues the order's next call on the thread. Arguments: the number of
-- books, and a number that makes this run's order ids unique.
local books = 1
local run = 0
local counter = 0
local to_take = {}
local to_confirm = {}
local headers = { ["Content-Type"] = "application/json" }
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  books = tonumber(args[1])
  run = tonumber(args[2])
end

function request()
  local id = table.remove(to_confirm)
  if id then
    return wrk.format("PUT", "/orders/" .. id .. "/status", headers,
      '{"from":"pending","to":"confirmed"}')
  end
  id = table.remove(to_take)
  if id then
    return wrk.format("PUT", "/orders/" .. id .. "/stock")
  end
  counter = counter + 1
  id = string.format("%08x-%04x-4000-8000-%012x", run, thread_number, counter)
  local body = string.format(
    '{"orderId":"%s","bookId":"bench-%d","quantity":1,"userId":"user-%d","status":"pending"}',
    id, counter % books, counter % 1000)
  return wrk.format("POST", "/orders", headers, body)
end

function response(status, _, body)
  if status >= 300 then
    return
  end
  local held = body:match('"orderId":"([^"]+)"')
  if held then
    to_confirm[#to_confirm + 1] = held
  elseif body:find('"status":"pending"', 1, true) then
    to_take[#to_take + 1] = body:match('"id":"([^"]+)"')
  end
end
