-- GET /api/v1/markets/search with a handful of realistic queries.
dofile("bench/report.lua")
local queries = {
  "bitcoin%20rise", "fed%20inflation", "heatwave%20end", "election%20candidate%20win",
  "merger%20pass", "launch%20happen", "team%20red%20win", "official%20source%20rules",
}

function request()
  return wrk.format("GET", "/api/v1/markets/search?limit=10&query=" .. queries[math.random(#queries)])
end
