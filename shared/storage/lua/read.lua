-- Read one (student, material) for a status: what ingest.lua replies, without appending.
-- KEYS: 1 pending list, 2 hot state hash, 3 the student's set of materials stored in MongoDB
-- ARGV: 1 material id, 2-4 the caller's cached view (epoch, n, pending heartbeats folded)
-- Returns {mode, epoch ('' when the key has no hash), n, preview folded count or '-1',
-- stored flag, base JSON, start index, heartbeats from the start index...}
local epoch = redis.call('HGET', KEYS[2], 'e') or ''
local n = redis.call('HGET', KEYS[2], 'n') or ''
local len = redis.call('LLEN', KEYS[1])
local stored = tostring(redis.call('SISMEMBER', KEYS[3], ARGV[1]))
local pl = '-1'
if redis.call('HGET', KEYS[2], 'pn') == n then pl = redis.call('HGET', KEYS[2], 'pl') end
local reply
if epoch ~= '' and ARGV[2] == epoch and ARGV[3] == n and tonumber(ARGV[4]) <= len then
  reply = {'cache', epoch, n, pl, stored, '', ARGV[4]}
elseif pl ~= '-1' then
  reply = {'preview', epoch, n, pl, stored, redis.call('HGET', KEYS[2], 'pv'), pl}
else
  reply = {'state', epoch, n, pl, stored, redis.call('HGET', KEYS[2], 'state') or '', '0'}
end
for _, hb in ipairs(redis.call('LRANGE', KEYS[1], tonumber(reply[7]), -1)) do
  reply[#reply + 1] = hb
end
return reply
