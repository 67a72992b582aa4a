-- GET /api/v1/markets/search with queries never sent before: a counter and a random number make
-- each one new, so no query-embedding cache answers and every request runs the embedder.
dofile("bench/report.lua")
local words = {
  "bitcoin", "inflation", "election", "heatwave", "merger", "launch", "team", "candidate",
  "rates", "rain", "champion", "court", "treaty", "budget", "storm", "rocket",
}
local sent = 0

function request()
  sent = sent + 1
  local query = words[math.random(#words)] .. "%20" .. words[math.random(#words)]
    .. "%20" .. sent .. "x" .. math.random(1000000000)
  return wrk.format("GET", "/api/v1/markets/search?limit=10&query=" .. query)
end
