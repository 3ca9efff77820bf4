-- GCRA: allowed when the new theoretical arrival time is at most `burst` intervals ahead of now.
-- Returns 0 when allowed, else the µs until it would be.
-- KEYS: 1 the user's theoretical arrival time; ARGV: 1 µs per message, 2 burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local new = tat + interval
local wait = new - interval * tonumber(ARGV[2]) - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return 0
