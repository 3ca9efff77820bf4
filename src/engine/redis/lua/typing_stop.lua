-- Ends a typing state. Returns 1 when there was one (announce the stop).
-- KEYS: 1 typing key, 2 typing-due zset, 3 typing-origin hash; ARGV: 1 member 'chat\nuser'
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('ZREM', KEYS[2], ARGV[1])
