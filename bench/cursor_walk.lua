-- A cursor walk: each connection follows meta.next_cursor page after page (by volume, 20 per
-- page) and starts over at the end.
dofile("bench/report.lua")
local base = "/api/v1/markets?sort=-volume&limit=20"
local path = base

function request()
  return wrk.format("GET", path)
end

function response(status, headers, body)
  local cursor = body:match('"next_cursor":"([^"]+)"')
  if cursor then path = base .. "&cursor=" .. cursor else path = base end
end
