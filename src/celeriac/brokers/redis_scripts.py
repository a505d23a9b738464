"""Lua scripts the Redis broker runs server-side, so each step is atomic."""

from __future__ import annotations

# Pop up to ARGV[1] messages from the queue keys in order and, in the same step, record
# each one in kombu's `unacked` hash and `unacked_index` zset and in this consumer's own set
# of held tags (KEYS[3]). A worker killed right after this script still leaves every message
# it took in `unacked`, and its owner set tells the survivors which ones were its.
# A JSON object without `properties` or without its `delivery_tag` (a hand-written
# producer) is given a tag, written into the envelope as a last `properties` key (JSON
# readers keep the last of a repeated key), so restores and redeliveries carry the same tag.
# A queue item that is not a JSON object, or whose properties or tag have the wrong type,
# cannot be tracked in `unacked`; it goes straight to the queue's dead-letter list and comes
# back with an empty tag.
#
# The tag is read without decoding the whole envelope when the envelope ends the way Celery
# and celeriac write it (`"body_encoding": "base64", "delivery_tag": "<tag>"}}`: the last keys
# of `properties`, the last key of the envelope); anything else is decoded. The `unacked`
# entry is kombu's [envelope, exchange, routing key] with the queue it was popped from as the
# routing key, so a restore by kombu or by us puts it back where it was.
#
# Acks the consumer deferred ride along, applied in the same call before anything is popped.
# Writes go out as one variadic command per key, not one per message.
#
# Each call carries a request id, and a call that takes messages records them under it (KEYS[5],
# one record per consumer). A call whose answer was lost (the connection dropped, or redis-py
# sent it again after a timeout) is repeated with the same id: it then answers with the
# messages it took the first time that this consumer still holds, and takes nothing new. So a
# lost answer never leaves messages in `unacked` that a live consumer does not know it holds.
#
# An idle consumer of one queue waits in a blocking move (BLMOVE) of the queue's next message
# into its inbox (KEYS[6]), so the wake-up carries the message. Every call adopts whatever is
# in the inbox first (before the acks: one may be for it), as if just popped from the queue
# named in ARGV[4].
#
# KEYS: unacked, unacked_index, owned, losses, fetch record, inbox, queue keys...
# ARGV: max_count, now, request id, inbox queue ('' if none), ack count n, n acked tags...,
#       queue name per queue key...
FETCH = """
local out = {}
local max_count = tonumber(ARGV[1])
local now = ARGV[2]
local request = ARGV[3]
local inbox_queue = ARGV[4]
local acks = tonumber(ARGV[5])
local minted = 0
local function tag_of(raw)
  local n = #raw
  if n > 20 and string.sub(raw, -3) == '"}}' then
    local at = string.find(raw, '"delivery_tag":', math.max(1, n - 100), true)
    -- properties' own tag (after its body_encoding), not a header of that name
    if at and string.find(string.sub(raw, math.max(1, at - 30), at - 1),
                          '"body_encoding": ?"base64", ?$') then
      local tag = string.match(raw, '^ ?"([%w%-_.:]+)"}}$', at + 15)
      if tag then return tag, raw end
    end
  end
  local ok, env = pcall(cjson.decode, raw)
  if not ok or type(env) ~= 'table' or next(env) == nil or env[1] ~= nil then return nil end
  local props = env.properties
  if props == nil then
    props = {}
  elseif type(props) ~= 'table' or props[1] ~= nil then
    return nil
  else
    local tag = props.delivery_tag
    if type(tag) == 'string' and tag ~= '' then return tag, raw end
    if tag ~= nil then return nil end
  end
  -- no tag (a hand-written producer): mint one and write it into the envelope, as a
  -- last `properties` key that replaces the first, so every later copy carries it
  local head = string.match(raw, '^(.*)}%s*$')
  if not head then return nil end
  minted = minted + 1
  local tag = 'celeriac-' .. request .. '-' .. minted
  props.delivery_tag = tag
  return tag, head .. ',"properties":' .. cjson.encode(props) .. '}'
end
local hset, zadd, tags, taken = {}, {}, {}, {}
local function take(key, queue, limit)
  local suffix = ',"",' .. cjson.encode(queue) .. ']'
  while #out < limit do
    local raw = redis.call('RPOP', key)
    if not raw then break end
    local tag, tagged = tag_of(raw)
    if tag then
      raw = tagged
      hset[#hset + 1] = tag
      hset[#hset + 1] = '[' .. raw .. suffix
      zadd[#zadd + 1] = now
      zadd[#zadd + 1] = tag
      tags[#tags + 1] = tag
      taken[#taken + 1] = {tag, queue}
      out[#out + 1] = {queue, tag, raw}
    else
      local reason = 'envelope is not a JSON object with properties.delivery_tag'
      redis.call('LPUSH', 'celeriac.dead.' .. queue,
        cjson.encode({queue = queue, reason = reason, time = tonumber(now), message = raw}))
      out[#out + 1] = {queue, '', raw}
    end
  end
end
-- the inbox first, so an ack of a message taken by a blocking move never comes before it
if inbox_queue ~= '' then
  take(KEYS[6], inbox_queue, math.huge)
  if #tags > 0 then
    redis.call('HSET', KEYS[1], unpack(hset))
    redis.call('ZADD', KEYS[2], unpack(zadd))
    redis.call('SADD', KEYS[3], unpack(tags))
    hset, zadd, tags = {}, {}, {}
  end
end
if acks > 0 then
  for first = 6, 5 + acks, 1000 do
    local last = math.min(first + 999, 5 + acks)
    redis.call('HDEL', KEYS[1], unpack(ARGV, first, last))
    redis.call('ZREM', KEYS[2], unpack(ARGV, first, last))
    redis.call('SREM', KEYS[3], unpack(ARGV, first, last))
    redis.call('HDEL', KEYS[4], unpack(ARGV, first, last))
  end
end
local record = redis.call('GET', KEYS[5])
if record and string.sub(record, 1, #request + 1) == request .. '\\n' then
  -- asked again: what the first call took and this consumer still holds, nothing new
  for _, held in ipairs(cjson.decode(string.sub(record, #request + 2))) do
    local tag, queue = held[1], held[2]
    local entry = redis.call('HGET', KEYS[1], tag)
    if entry and redis.call('SISMEMBER', KEYS[3], tag) == 1 then
      local suffix = ',"",' .. cjson.encode(queue) .. ']'
      taken[#taken + 1] = held
      out[#out + 1] = {queue, tag, string.sub(entry, 2, #entry - #suffix)}
    end
  end
else
  max_count = max_count + #out
  local first_queue_arg = 6 + acks
  for i = 7, #KEYS do
    if #out >= max_count then break end
    take(KEYS[i], ARGV[first_queue_arg + i - 7], max_count)
  end
  if #tags > 0 then
    redis.call('HSET', KEYS[1], unpack(hset))
    redis.call('ZADD', KEYS[2], unpack(zadd))
    redis.call('SADD', KEYS[3], unpack(tags))
  end
end
if #taken > 0 then
  redis.call('SET', KEYS[5], request .. '\\n' .. cjson.encode(taken), 'EX', 3600)
end
return out
"""

# Say that these owners are alive, and keep the unacked messages they hold fresh in
# `unacked_index`, so no visibility-timeout sweep (ours or kombu's) takes a message that a
# live worker is still running or holding.
# Each owner's held messages it has not started are written to `celeriac.idle.<owner>`, so
# if it dies before its next beat they go back without counting a loss.
# KEYS: heartbeats, unacked_index
# ARGV: now, then for each owner: owner, n, the n tags it has started (n = -1: not known)
HEARTBEAT = """
local now = ARGV[1]
local i = 2
while i <= #ARGV do
  local owner, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[1], now, owner)
  local tags = redis.call('SMEMBERS', 'celeriac.owned.' .. owner)
  for _, tag in ipairs(tags) do
    redis.call('ZADD', KEYS[2], 'XX', now, tag)
  end
  local idle = 'celeriac.idle.' .. owner
  redis.call('DEL', idle)
  if n >= 0 then
    local started, spare = {}, {}
    for j = 1, n do started[ARGV[i + 1 + j]] = true end
    for _, tag in ipairs(tags) do
      if not started[tag] then spare[#spare + 1] = tag end
    end
    for first = 1, #spare, 1000 do
      redis.call('SADD', idle, unpack(spare, first, math.min(first + 999, #spare)))
    end
  else
    n = 0
  end
  i = i + 2 + n
end
return 1
"""

# Release a mutex only if we still hold it.
# KEYS: mutex     ARGV: token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Park a task that is due later: move it from `unacked` into the delayed zset, scored by its
# due time, in one step. Member = "<queue list for its priority>\n<envelope>".
# KEYS: unacked, unacked_index, delayed     ARGV: tag, due, queue, raw
DEFER = """
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3] .. '\\n' .. ARGV[4])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# Move every parked task that is due onto the front of its queue list (the member names the
# list for its priority), earliest due taken first, and return the score of the next one still
# waiting (or false).
# KEYS: delayed     ARGV: now, limit
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for i = #due, 1, -1 do
  local member = due[i]
  local cut = string.find(member, '\\n', 1, true)
  if cut then
    redis.call('RPUSH', string.sub(member, 1, cut - 1), string.sub(member, cut + 1))
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then return nxt[2] end
return false
"""

# Move dead letters back onto their queue in one step: every record of the dead list (all,
# or only those whose envelope has headers.id == ARGV[1]) goes back, oldest first, to the back
# of the list for its priority (LPUSH, as a publish does); the rest stay in their order. The
# message is pushed exactly as it was recorded; it is decoded only to read its id and priority.
# KEYS: dead list     ARGV: task id ('' for all), queue name
REQUEUE_DEAD = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local moved, keep = 0, {}
for i = #items, 1, -1 do
  local ok, record = pcall(cjson.decode, items[i])
  local target, message
  if ok and type(record) == 'table' and type(record.message) == 'string' then
    message = record.message
    local id, priority = nil, 0
    local parsed, env = pcall(cjson.decode, message)
    if parsed and type(env) == 'table' then
      if type(env.headers) == 'table' then id = env.headers.id end
      if type(env.properties) == 'table' then
        priority = tonumber(env.properties.priority) or 0
      end
    end
    if ARGV[1] == '' or id == ARGV[1] then
      local step = math.floor(math.max(0, math.min(9, priority)) / 3) * 3
      target = ARGV[2]
      if step > 0 then target = ARGV[2] .. '\\6\\22' .. step end
    end
  end
  if target then
    redis.call('LPUSH', target, message)
    moved = moved + 1
  else
    keep[i] = true
  end
end
if moved > 0 then
  local rest = {}
  for i = 1, #items do
    if keep[i] then rest[#rest + 1] = items[i] end
  end
  redis.call('DEL', KEYS[1])
  for start = 1, #rest, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(rest, start, math.min(start + 999, #rest)))
  end
end
return moved
"""

# Move one dead-letter record back onto its queue if it is still on the dead list: for a
# protocol 1 message, whose task id is in its (base64) body, which only Python reads.
# KEYS: dead list, the queue's list for the message's priority
# ARGV: the record exactly as listed, the message to push
REQUEUE_ONE_DEAD = """
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
