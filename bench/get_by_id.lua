-- GET /api/v1/markets/{id} over many ids (read from BENCH_IDS, default bench/.ids.txt): at
-- random, or in file order from a random start with BENCH_ID_ORDER=sequential (to fill a cache
-- with every id in the file).
dofile("bench/report.lua")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS") or "bench/.ids.txt") do ids[#ids + 1] = line end
local sequential = os.getenv("BENCH_ID_ORDER") == "sequential"
local next_id = math.random(#ids)

function request()
  local id
  if sequential then
    id = ids[next_id]
    next_id = next_id % #ids + 1
  else
    id = ids[math.random(#ids)]
  end
  return wrk.format("GET", "/api/v1/markets/" .. id)
end
