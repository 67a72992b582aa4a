-- GET /health/live: the ceiling the other scenarios are compared with.
dofile("bench/report.lua")
