-- Record one key's open xAPI player sessions and drop its ended ones (the flush's hook), in the
-- student's session index too. Sessions of heartbeats an erasure replaced (a state version at or
-- below the student's tombstone for the material) are not recorded: erased, they stay erased.
-- KEYS: 1 the open sessions zset, 2 the student's session index, 3 the student's tombstones
-- ARGV: 1 material id, 2 the version of the state the heartbeats were folded into, 3 the number
--       n of open sessions, then n (member, last receive time) pairs, then ended members
-- Returns 1 when the open sessions were recorded, 0 when refused as erased.
local open = tonumber(ARGV[3])
for i = 4 + 2 * open, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[2], ARGV[i])
end
local tombstone = redis.call('HGET', KEYS[3], ARGV[1])
if tombstone and tonumber(ARGV[2]) <= tonumber(tombstone) then return 0 end
for i = 4, 3 + 2 * open, 2 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
  redis.call('SADD', KEYS[2], ARGV[i])
end
return 1
