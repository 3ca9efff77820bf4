-- One send: dedupe, seq, durable enqueue, recent window, fan-out. Atomic, so per chat the
-- PUBLISHes leave in seq order whichever node runs the script.
-- KEYS: 1 seq, 2 idempotency, 3 stream, 4 recent, 5 pending
-- ARGV: 1 stored JSON before the seq, 2 stored JSON after it, 3/4 the same for the copy shown
--       to clients ('' when it is the stored one), 5 idempotency TTL ms, 6 recent size,
--       7 recent TTL ms, 8 envelope head, 9 seq seed ('' unless the node read it from the store),
--       10.. the channels to publish on
-- Returns {1, seq} for a new message, {0, seq, first JSON or ''} for a duplicate, {-1} when the
-- chat's seq counter is missing and the node must seed it from the store.
local first = redis.call('GET', KEYS[2])
if first then
  local seq = tonumber(first)
  local found = redis.call('ZRANGEBYSCORE', KEYS[5], seq, seq)
  if #found == 0 then found = redis.call('ZRANGEBYSCORE', KEYS[4], seq, seq) end
  return {0, seq, found[1] or ''}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[9] == '' then return {-1} end
  redis.call('SET', KEYS[1], ARGV[9], 'NX')
end
local seq = redis.call('INCR', KEYS[1])
local json = ARGV[1] .. seq .. ARGV[2]
redis.call('SET', KEYS[2], seq, 'PX', ARGV[5])
redis.call('XADD', KEYS[3], '*', 'm', json)
redis.call('ZADD', KEYS[5], seq, json)
redis.call('ZADD', KEYS[4], seq, json)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[6]) + 1))
redis.call('PEXPIRE', KEYS[4], ARGV[7])
local shown = json
if ARGV[3] ~= '' then shown = ARGV[3] .. seq .. ARGV[4] end
local payload = ARGV[8] .. seq .. '|42["message_received",{"message":' .. shown .. '}]'
for i = 10, #ARGV do
  redis.call('PUBLISH', ARGV[i], payload)
end
return {1, seq}
