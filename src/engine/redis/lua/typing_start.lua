-- Starts or renews a typing state. Returns 1 when it is new (announce it).
-- KEYS: 1 typing key, 2 typing-due zset, 3 typing-origin hash
-- ARGV: 1 origin socket, 2 TTL ms, 3 member 'chat\nuser'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewal = redis.call('ZSCORE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
if renewal then return 0 end
return 1
