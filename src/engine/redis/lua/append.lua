-- One send, in one call: the sender's rate limit, dedupe, seq, durable enqueue, the chat's log,
-- fan-out. Atomic, so per chat the PUBLISHes leave in seq order whichever node runs it, and every
-- key is the chat's (one hash slot).
-- KEYS: 1 rate (the sender's, in the chat's slot), 2 seq, 3 idempotency, 4 shard stream, 5 chat
--       log, 6 the chat's pending seqs
-- ARGV: 1 stored JSON before the seq, 2 stored JSON after it, 3/4 the same for the copy shown
--       to clients ('' when it is the stored one), 5 idempotency TTL ms, 6 envelope head, 7 seq
--       seed ('' unless the node read it from the store), 8 ms per unit of the rate, 9 its burst,
--       10.. the channels to publish on
-- The chat log's TTL is set when its messages are released (lua/release.lua), not per send.
-- Returns {1, seq} for a new message, {0, seq, first JSON or ''} for a duplicate, {-1} when the
-- chat's seq counter is missing and the node must seed it from the store, {-2, ms} when the
-- sender is over the rate (retry in ms).

-- GCRA: the sender's theoretical arrival time, charged only once the send is taken.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[8])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local over = tat + interval - now - interval * tonumber(ARGV[9])
if over > 0 then return {-2, math.max(1, math.ceil(over))} end

local seq
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[2], ARGV[7], 'NX')
  seq = redis.call('INCR', KEYS[2])
else
  seq = redis.call('INCR', KEYS[2])
  if seq == 1 then
    -- A new chat, or a counter Redis lost: only the store can tell.
    redis.call('DEL', KEYS[2])
    return {-1}
  end
end
if not redis.call('SET', KEYS[3], seq, 'NX', 'PX', ARGV[5]) then
  redis.call('DECR', KEYS[2])
  local first = tonumber(redis.call('GET', KEYS[3]))
  local found = redis.call('XRANGE', KEYS[5], first .. '-0', first .. '-0')
  local json = ''
  if #found > 0 then json = found[1][2][2] end
  return {0, first, json}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)

local json = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[4], '*', 'm', json)
redis.call('XADD', KEYS[5], seq .. '-0', 'm', json)
redis.call('ZADD', KEYS[6], seq, seq)
local shown = json
if ARGV[3] ~= '' then shown = ARGV[3] .. seq .. ARGV[4] end
local payload = ARGV[6] .. seq .. '|42["message_received",{"message":' .. shown .. '}]'
for i = 10, #ARGV do
  redis.call('PUBLISH', ARGV[i], payload)
end
return {1, seq}
