-- KEYS: the triple, the new chat's hash; ARGV: id, courseId, studentId, tutorId, createdAt.
-- Returns {created 1|0, chat id}.
local id = redis.call('GET', KEYS[1])
if id then return {0, id} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'courseId', ARGV[2], 'studentId', ARGV[3], 'tutorId', ARGV[4],
  'createdAt', ARGV[5], 'updatedAt', ARGV[5])
return {1, ARGV[1]}
