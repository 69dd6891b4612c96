-- The view of one (student, material) key: prepended by shared/storage/scripts.py to the
-- scripts that answer with it (ingest.lua, read.lua), so that they check and answer alike.
-- `k` is the key as the script sees it (`key_of`): {hash = hot state hash, list = pending list,
-- epoch = the hash's 'e' ('' when none), n = the hash's 'n' ('' when none), len = LLEN, the
-- hash's preview fields pl, pn, pm and the grant g (nil when none), marks = the SHA-1s of list
-- entries already read in this call, last = the SHA-1 of the list's last entry when known}.
-- A caller's view is what it folded of the key: (epoch, n, pending heartbeats folded, mark),
-- where the mark is the SHA-1 of the last heartbeat folded ('' when none).

-- The key's fields in one HMGET (the epoch as stored: nil when none).
local function key_of(hash, list, len)
  local h = redis.call('HMGET', hash, 'e', 'n', 'pl', 'pn', 'pm', 'g')
  return {hash = hash, list = list, epoch = h[1] or nil, n = h[2] or '', len = len,
          pl = h[3] or nil, pn = h[4] or nil, pm = h[5] or nil, g = h[6] or nil, marks = {}}
end

-- The SHA-1 of the list's entry at `i` (0-based), read at most once per call: entries below
-- the length read at the start stay where they are when the call appends.
local function mark_at(k, i)
  local mark = k.marks[i]
  if not mark then
    mark = redis.sha1hex(redis.call('LINDEX', k.list, i))
    k.marks[i] = mark
  end
  return mark
end

-- Whether the list still holds the view's heartbeats. A view without an epoch (a caller with
-- none, or a key without a hash) never holds; nor does one whose last heartbeat is gone (a
-- list that lost its tail in a Redis crash between two fsyncs and grew back).
local function view_holds(k, e, v, folded, mark)
  folded = tonumber(folded)
  if e == '' or e ~= k.epoch or v ~= k.n or folded > k.len then return false end
  if folded == 0 then return mark == '' end
  return mark_at(k, folded - 1) == mark
end

-- How far the key's preview reaches (-1: none), and whether it holds for version n.
local function preview_of(k)
  local pl = tonumber(k.pl or '-1')
  local holds = pl >= 0 and k.pn == k.n and view_holds(k, k.epoch, k.n, pl, k.pm)
  return pl, holds
end

-- Appends the view to `reply`: mode, epoch, n, preview reach ('-1' when it does not hold),
-- stored ('1' if MongoDB holds a state), base JSON, start index, mark of the list's last
-- heartbeat ('' when empty), then the heartbeats from the start index. The mode says what the
-- heartbeats follow: 'cache' (the caller's view, `cached`, folded `cached_folded`: base JSON
-- ''), 'preview' (a state a web process folded from the hot state and the first pending
-- heartbeats) or 'state' (the hot state, '' when none). A reply never holds more heartbeats
-- than came after the caller's view or the preview: its cost does not grow with the backlog.
local function view_reply(reply, k, stored, pl, preview_holds, cached, cached_folded)
  local shown = preview_holds and tostring(pl) or '-1'
  local last = ''
  if k.len > 0 then last = k.last or mark_at(k, k.len - 1) end
  local mode, base, start
  if cached and (not preview_holds or tonumber(cached_folded) >= pl) then
    mode, base, start = 'cache', '', cached_folded
  elseif preview_holds then
    mode, base, start = 'preview', redis.call('HGET', k.hash, 'pv'), shown
  else
    mode, base, start = 'state', redis.call('HGET', k.hash, 'state') or '', '0'
  end
  local i = #reply
  reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4] = mode, k.epoch, k.n, shown
  reply[i + 5], reply[i + 6], reply[i + 7], reply[i + 8] = stored, base, start, last
  i = i + 8
  for j, hb in ipairs(redis.call('LRANGE', k.list, tonumber(start), -1)) do
    reply[i + j] = hb
  end
  return reply
end
