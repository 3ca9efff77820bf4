-- The store has these messages: ack and delete their stream entries, take them out of their
-- chats' pending seqs, trim each chat's log to what is pending plus the last `recent` messages,
-- and give the log its TTL (counted from the chat's last release).
-- KEYS: 1 stream, then per chat: its pending seqs, its log
-- ARGV: 1 group, 2 recent size, 3 log TTL ms, 4 how many stream ids follow, the ids, then per
--       chat (in KEYS order): how many seqs follow, the seqs
local ids = tonumber(ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 5, 4 + ids))
local n = redis.call('XDEL', KEYS[1], unpack(ARGV, 5, 4 + ids))
local recent = tonumber(ARGV[2])
local at = 5 + ids
for i = 0, (#KEYS - 1) / 2 - 1 do
  local pending, log = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local count = tonumber(ARGV[at])
  redis.call('ZREM', pending, unpack(ARGV, at + 1, at + count))
  local newest = 0
  for j = at + 1, at + count do newest = math.max(newest, tonumber(ARGV[j])) end
  at = at + count + 1
  -- Keep from the oldest seq still pending, or the last `recent`, whichever is older.
  local keep = newest - recent + 1
  local oldest = redis.call('ZRANGE', pending, 0, 0)
  if #oldest > 0 then keep = math.min(keep, tonumber(oldest[1])) end
  if keep > 1 then redis.call('XTRIM', log, 'MINID', '~', keep .. '-0') end
  redis.call('PEXPIRE', log, ARGV[3])
end
return n
