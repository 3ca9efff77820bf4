-- A node's heartbeat, and the nodes that stopped beating. Times are Redis's clock, so nodes'
-- clocks may differ.
-- KEYS: 1 live nodes zset; ARGV: 1 this node, 2 dead after ms
-- Returns a flat list of dead nodes and their last heartbeat: node, ms, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'WITHSCORES', 'LIMIT', 0, 100)
