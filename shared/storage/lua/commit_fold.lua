-- Replace a hot state by one with the first ARGV[3] pending heartbeats folded in, if nobody
-- else folded since it was read (compare-and-set on the folded count 'n'). A preview built
-- on the old state no longer applies and goes.
-- KEYS: 1 hot state hash, 2 pending list, 3 the partition's pending counter
-- ARGV: 1 expected n ('' when the hash did not exist), 2 new state JSON, 3 folded, 4 new n
local held = redis.call('HMGET', KEYS[1], 'n', 'pl')
if (held[1] or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'n', ARGV[4])
if held[2] then  -- a preview's four fields are written together (ingest.lua) and go together
  redis.call('HDEL', KEYS[1], 'pv', 'pn', 'pl', 'pm')
end
redis.call('PERSIST', KEYS[1])
local folded = tonumber(ARGV[3])
if folded > 0 then
  redis.call('LTRIM', KEYS[2], folded, -1)
  redis.call('DECRBY', KEYS[3], folded)
end
return 1
