-- GET /api/v1/markets/{id} over many ids (read from bench/ids.txt), uncached.
dofile("bench/report.lua")
local ids = {}
for line in io.lines("bench/.ids.txt") do ids[#ids + 1] = line end

function request()
  return wrk.format("GET", "/api/v1/markets/" .. ids[math.random(#ids)])
end
