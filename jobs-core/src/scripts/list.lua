-- list.lua: one page of jobs, newest first.
--
-- KEYS[1]  an index zset (score = seq): {prefix}:index or {prefix}:status:{STATUS}
-- ARGV[1]  key prefix
-- ARGV[2]  the highest seq to include, or "+inf" for the first page
-- ARGV[3]  page size
--
-- Returns {more, {job, job, ...}}: more is 1 when jobs remain after this
-- page; each job is the array {field, value, ...} of its hash. Index entries whose
-- hash has gone (expired) are removed and skipped.

local prefix, max, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local page = {}
local found = 0

-- Each pass asks for one job more than the page still needs: the extra one
-- tells whether another page follows. Passes repeat only when expired
-- entries were skipped; `max` falls strictly, so they end.
while true do
  local want = size - found + 1
  local jids = redis.call('ZREVRANGEBYSCORE', KEYS[1], max, '-inf',
    'WITHSCORES', 'LIMIT', 0, want)
  for i = 1, #jids, 2 do
    local jid, seq = jids[i], jids[i + 1]
    if found == size then
      return {1, page}
    end
    local fields = redis.call('HGETALL', prefix .. ':job:' .. jid)
    if #fields == 0 then
      redis.call('ZREM', KEYS[1], jid)
    else
      found = found + 1
      page[#page + 1] = fields
    end
    max = '(' .. seq
  end
  if #jids < want * 2 then break end
end

return {0, page}
