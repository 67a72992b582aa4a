-- GET /api/v1/markets?page=N over the first 500 pages (20 per page, newest first).
dofile("bench/report.lua")

function request()
  return wrk.format("GET", "/api/v1/markets?page=" .. math.random(500))
end
