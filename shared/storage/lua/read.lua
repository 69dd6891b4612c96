-- Read one (student, material) for a status: what ingest.lua replies, without appending.
-- KEYS: 1 pending list, 2 hot state hash, 3 the student's set of materials stored in MongoDB
-- ARGV: 1 material id, 2-5 the caller's cached view (epoch, n, pending heartbeats folded, mark)
-- Returns {mode, epoch ('' when the key has no hash), n, preview folded count or '-1',
-- stored flag, base JSON, start index, mark of the list's last heartbeat ('' when empty),
-- heartbeats from the start index...}
local epoch = redis.call('HGET', KEYS[2], 'e') or ''
local n = redis.call('HGET', KEYS[2], 'n') or ''
local len = redis.call('LLEN', KEYS[1])
local function holds(e, v, folded, mark)  -- does the list still hold the view's heartbeats?
  folded = tonumber(folded)
  if e == '' or e ~= epoch or v ~= n or folded > len then return false end
  if folded == 0 then return mark == '' end
  return redis.sha1hex(redis.call('LINDEX', KEYS[1], folded - 1)) == mark
end
local stored = tostring(redis.call('SISMEMBER', KEYS[3], ARGV[1]))
local pl = tonumber(redis.call('HGET', KEYS[2], 'pl') or '-1')
local preview_holds = pl >= 0 and redis.call('HGET', KEYS[2], 'pn') == n
  and holds(epoch, n, pl, redis.call('HGET', KEYS[2], 'pm'))
local shown = preview_holds and tostring(pl) or '-1'
local last = ''
if len > 0 then last = redis.sha1hex(redis.call('LINDEX', KEYS[1], -1)) end
local reply
if holds(ARGV[2], ARGV[3], ARGV[4], ARGV[5]) and (not preview_holds or tonumber(ARGV[4]) >= pl) then
  reply = {'cache', epoch, n, shown, stored, '', ARGV[4], last}
elseif preview_holds then
  reply = {'preview', epoch, n, shown, stored, redis.call('HGET', KEYS[2], 'pv'), shown, last}
else
  reply = {'state', epoch, n, shown, stored, redis.call('HGET', KEYS[2], 'state') or '', '0', last}
end
for _, hb in ipairs(redis.call('LRANGE', KEYS[1], tonumber(reply[7]), -1)) do
  reply[#reply + 1] = hb
end
return reply
