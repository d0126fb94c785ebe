-- create.lua: save a new job and queue its id, atomically.
--
-- KEYS[1]  job hash              {prefix}:job:{jid}
-- KEYS[2]  queue stream          {prefix}:queue
-- KEYS[3]  index of all jobs     {prefix}:index        (zset, score = seq)
-- KEYS[4]  creation counter      {prefix}:seq          (string)
-- KEYS[5]  index of QUEUED jobs  {prefix}:status:QUEUED (zset, score = seq)
-- ARGV[1]  jid
-- ARGV[2]  start
-- ARGV[3]  end
-- ARGV[4]  kind
-- ARGV[5]  params as a JSON object, or "" for none
--
-- Returns {create_time, seq}: create_time in microseconds since the Unix
-- epoch (Redis's clock, so every process agrees), seq the job's place in the
-- creation order. Returns an error if a job with this jid already exists.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE job ' .. ARGV[1] .. ' already exists')
end

local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local seq = redis.call('INCR', KEYS[4])

redis.call('HSET', KEYS[1],
  'jid', ARGV[1], 'status', 'QUEUED', 'start', ARGV[2], 'end', ARGV[3],
  'kind', ARGV[4], 'params', ARGV[5], 'create_time', now,
  'attempts', 0, 'progress', 0, 'version', 1, 'seq', seq)
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[5], seq, ARGV[1])
redis.call('XADD', KEYS[2], '*', 'jid', ARGV[1])

return {now, seq}
