-- Set a key aside (shared/storage/set_aside.py): out of the flush cycle (off the partition's
-- dirty zset and leases), listed in its poison zset with why, and listed in the student's key
-- index (which an erasure reads). Its hot state and heartbeats stay where they are.
-- Not a key erased since the flush read it: the erasure's cut took its data and took it off
-- every list, so there is nothing left to set aside, and listing it again would bring the erased
-- key back to the poison set and the key index (and `poison retry` would make it due: claimed
-- after every lease while its tombstone lives). Whatever is in dirty or leases now is a later
-- heartbeat's, and stays. Erased since: its tombstone is at or above the version the flush made
-- of it (ARGV[5]; as in finish.lua, every version made from a read before the cut is below it);
-- when the flush made none (its data could not be read or folded), the key holds nothing beyond
-- its tombstone (the version the cut left, no heartbeat since).
-- Every key shares the student's partition tag (one cluster slot).
-- KEYS: 1 the partition's dirty zset, 2 its leases hash, 3 its poison zset, 4 its poison:why
--       hash, 5 the student's key index, 6 the student's tombstones, 7 the key's hot state hash,
--       8 its pending list
-- ARGV: 1 member, 2 now, 3 why (JSON), 4 material id, 5 the version the flush made ('' none)
-- Returns 1 if the key was set aside, 0 if it was erased meanwhile.
local tombstone = tonumber(redis.call('HGET', KEYS[6], ARGV[4]) or '')
if tombstone then
  local made = tonumber(ARGV[5])
  if made then
    if made <= tombstone then return 0 end
  else
    local held = tonumber(redis.call('HGET', KEYS[7], 'n') or '')
    if held and held <= tombstone and redis.call('LLEN', KEYS[8]) == 0 then return 0 end
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[4])
return 1
