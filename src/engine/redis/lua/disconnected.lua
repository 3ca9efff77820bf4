-- A socket of a user closed on a node. When it was the user's last anywhere, the grace period
-- starts: the user is in the leaving set until the deadline.
-- KEYS: 1 presence hash, 2 node users set, 3 leaving zset, 4 last-seen hash
-- ARGV: 1 node, 2 user, 3 grace ms (times are Redis's clock), 4 'all' to drop every socket the
--       node had (it no longer holds any), else one
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
if ARGV[4] ~= 'all' then n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
    redis.call('HSET', KEYS[4], ARGV[2], now)
  end
end
return n
