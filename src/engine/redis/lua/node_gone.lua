-- Removes a dead node's sockets from the presence of one shard's users; users left with no
-- socket anywhere start leaving at once (the node has been silent longer than the grace period).
-- KEYS: 1 the node's users set, 2 leaving zset, 3 last-seen hash
-- ARGV: 1 node, 2 last seen ms (its last heartbeat), 3 presence key prefix of the shard
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local users = redis.call('SMEMBERS', KEYS[1])
for _, user in ipairs(users) do
  local presence = ARGV[3] .. user
  redis.call('HDEL', presence, ARGV[1])
  if redis.call('HLEN', presence) == 0 then
    redis.call('ZADD', KEYS[2], 'NX', now, user)
    redis.call('HSETNX', KEYS[3], user, ARGV[2])
  end
end
redis.call('DEL', KEYS[1])
return #users
