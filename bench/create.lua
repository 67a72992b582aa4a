-- POST /api/v1/markets as an admin (token from the environment).
dofile("bench/report.lua")
local token = os.getenv("BENCH_TOKEN")
local counter = 0

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Benchmark market %d","description":"Created under load.","volume":%d.25}',
    counter, counter % 100000)
  return wrk.format("POST", "/api/v1/markets",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
