-- GCRA: one unit of a key's allowance, shared by every node. Returns 0 when allowed, else the
-- milliseconds until a unit is available.
-- KEYS: 1 the key's theoretical arrival time; ARGV: 1 ms per unit, 2 burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local over = next_tat - now - interval * burst
if over > 0 then
  return math.max(1, math.ceil(over))
end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return 0
