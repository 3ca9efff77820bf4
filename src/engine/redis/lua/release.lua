-- The store has these messages: ack and delete their stream entries, drop them from pending.
-- KEYS: 1 stream, 2.. the pending key of each entry
-- ARGV: 1 group, then per entry: stream id, seq (in KEYS order from KEYS[2])
local n = 0
for i = 2, #KEYS do
  local id = ARGV[(i - 2) * 2 + 2]
  local seq = ARGV[(i - 2) * 2 + 3]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  n = n + redis.call('XDEL', KEYS[1], id)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], seq, seq)
end
return n
