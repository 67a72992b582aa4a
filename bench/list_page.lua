-- GET /api/v1/markets?sort=-volume&page=N over every page offset paging allows (20 per page:
-- pages 1-500, rows up to the 10,000-row cap), at random.
dofile("bench/report.lua")

function request()
  return wrk.format("GET", "/api/v1/markets?sort=-volume&page=" .. math.random(500))
end
