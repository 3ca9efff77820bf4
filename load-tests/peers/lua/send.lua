-- KEYS: idem, seq, recent, chat; ARGV: the message JSON after its seq field, idempotency ms,
-- recent cap, createdAt, sender. Returns {fresh 1|0, message JSON}.
local first = redis.call('GET', KEYS[1])
if first then return {0, first} end
local seq = redis.call('INCR', KEYS[2])
local message = '{"seq":' .. seq .. ',' .. ARGV[1]
redis.call('SET', KEYS[1], message, 'PX', ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'm', message)
redis.call('HSET', KEYS[4], 'updatedAt', ARGV[4], 'read:' .. ARGV[5], seq)
return {1, message}
