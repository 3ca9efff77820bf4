-- The due timers of one shard, each claimed by exactly one node: typing states that expired and
-- users whose grace period ended with no socket back.
-- KEYS: 1 typing-due zset, 2 typing-origin hash, 3 leaving zset, 4 last-seen hash
-- ARGV: 1 presence key prefix of the shard (times are Redis's clock, the same for every node)
-- Returns a flat list: 'T', 'chat\nuser', origin, ... and 'O', user, last seen ms, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)) do
  redis.call('ZREM', KEYS[1], member)
  local origin = redis.call('HGET', KEYS[2], member)
  redis.call('HDEL', KEYS[2], member)
  table.insert(out, 'T')
  table.insert(out, member)
  table.insert(out, origin or '0')
end
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)) do
  redis.call('ZREM', KEYS[3], user)
  local seen = redis.call('HGET', KEYS[4], user)
  redis.call('HDEL', KEYS[4], user)
  if redis.call('EXISTS', ARGV[1] .. user) == 0 then
    table.insert(out, 'O')
    table.insert(out, user)
    table.insert(out, seen or tostring(now))
  end
end
return out
