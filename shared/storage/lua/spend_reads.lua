-- Count a user's reads in the current window, unless that goes over the limit (the read limit:
-- status reads, course views, /api/me/courses and exports, as ingest counts heartbeats).
-- KEYS: 1 the user's read counter for the window.  ARGV: 1 limit, 2 window seconds, 3 cost
-- Returns 1 when the reads are counted, 0 when refused (refused reads do not count).
local used = redis.call('INCRBY', KEYS[1], ARGV[3])
-- A counter above the cost was there before: this script gave it its TTL when it made it.
if used == tonumber(ARGV[3]) and redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if used > tonumber(ARGV[1]) then
  redis.call('DECRBY', KEYS[1], ARGV[3])
  return 0
end
return 1
