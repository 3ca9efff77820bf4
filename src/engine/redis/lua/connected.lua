-- A socket of a user opened on a node. Returns 1 when the user just came online (no socket
-- anywhere and not in a grace period before).
-- KEYS: 1 presence hash, 2 node users set, 3 leaving zset; ARGV: 1 node, 2 user
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then
  return 0
end
if n == 1 and redis.call('HLEN', KEYS[1]) == 1 then
  return 1
end
return 0
