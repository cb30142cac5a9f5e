package redis

import (
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/queue"
)

// Every change of a job's state is one of these Lua scripts, so Redis runs it
// as one atomic step. ARGV[1] is always the key prefix. Times come from the
// server's TIME, in microseconds; numbers are written with string.format('%d')
// because Lua's tostring would print large ones in exponent form. The scripts
// are immutable after package initialisation; go-redis runs them by EVALSHA
// and loads them on NOSCRIPT.

// prelude is shared by the scripts: key names and the common moves.
//
// Job hashes can be edited by hand, so the scripts never do arithmetic on a
// field they have not checked with toint: an unreadable number falls back to
// a default where the script only needs it for an index score, and is passed
// back to Go unchanged where Go reads it (Claim then marks the job invalid).
// A script that raised an error half-way would leave its writes behind, so
// each one reads and checks first and writes last.
const prelude = `
local P = ARGV[1]
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(n) return string.format('%d', n) end
-- toint reads a stored integer: optional minus sign and at most 17 digits,
-- or nil (Lua's tonumber would also take ' 1', '1.5' and '1e3').
local function toint(s)
  if type(s) ~= 'string' then return nil end
  local d = string.match(s, '^%-?(%d+)$')
  if (not d) or #d > 17 then return nil end
  return tonumber(s)
end
local function jobkey(id) return P .. 'job:' .. id end
local function availkey(q) return P .. 'avail:' .. q end
local function idxkey(st, q) return P .. 'idx:' .. st .. ':' .. q end
-- Members of an available set sort by run_at, then ID, within one priority.
local function member(run_at, id) return string.format('%016d', run_at) .. ':' .. id end
local function make_available(id, q, prio, run_at)
  redis.call('ZADD', availkey(q), 0 - (prio or 0), member(run_at or 0, id))
end
-- move re-files a job in the per-state index; dispatched is its score.
local function move(id, q, from, to, dispatched)
  redis.call('ZREM', idxkey(from, q), id)
  redis.call('ZADD', idxkey(to, q), toint(dispatched) or 0, id)
end
-- json_items splits s, the text of a JSON array, into the text of its
-- elements, or returns nil when s is not a JSON array (cjson checks that it
-- parses; the scan finds the commas between elements, outside strings and
-- nesting). Entries are copied byte for byte, never decoded and encoded
-- again: cjson would print at_us in exponent form.
local function json_items(s)
  if type(s) ~= 'string' then return nil end
  local ok, v = pcall(cjson.decode, s)
  if (not ok) or type(v) ~= 'table' then return nil end
  local b = string.find(s, '[^ \t\r\n]')
  if (not b) or string.sub(s, b, b) ~= '[' then return nil end
  local items, depth, from, pos = {}, 0, b + 1, b + 1
  while true do
    local p = string.find(s, '[%[%]{}",]', pos)
    if not p then return nil end
    local c = string.sub(s, p, p)
    if c == '"' then
      local q = p + 1
      while true do
        local r = string.find(s, '["\\]', q)
        if not r then return nil end
        if string.sub(s, r, r) == '"' then pos = r + 1; break end
        q = r + 2
      end
    elseif c == '[' or c == '{' then
      depth, pos = depth + 1, p + 1
    elseif depth > 0 then
      if c == ']' or c == '}' then depth = depth - 1 end
      pos = p + 1
    elseif c == ',' then
      table.insert(items, string.sub(s, from, p - 1))
      from, pos = p + 1, p + 1
    elseif c == ']' then
      local last = string.sub(s, from, p - 1)
      if string.find(last, '[^ \t\r\n]') then table.insert(items, last) end
      break
    else
      return nil
    end
  end
  if #items ~= #v then return nil end
  return items
end
-- add_error appends {"attempt","at_us","error"} to the job's JSON error
-- history; every script that notes an error calls it. cap is
-- queue.MaxErrorHistory, passed from Go: when the history already holds cap
-- entries, the first and the newest cap-1 (this one included) are kept, and
-- the number dropped is added to the errors_omitted field. A history that is
-- not a JSON array (edited by hand) is replaced by an entry quoting its
-- start, then this one. It raises no error on a job hash the caller has read.
local function add_error(key, attempt, at, msg, cap)
  local e = '{"attempt":' .. int(attempt or 0) .. ',"at_us":' .. int(at) .. ',"error":' .. cjson.encode(msg) .. '}'
  local errs = redis.call('HGET', key, 'errors')
  local items = {}
  if errs and errs ~= '' then
    items = json_items(errs)
    if not items then
      items = {'{"attempt":0,"at_us":' .. int(at) .. ',"error":' ..
        cjson.encode('unreadable errors field replaced: ' .. string.sub(errs, 1, 1024)) .. '}'}
    end
  end
  local n, dropped = #items, 0
  if n >= cap then
    dropped = n + 1 - cap
    local kept = {items[1]}
    for i = n - cap + 3, n do table.insert(kept, items[i]) end
    items = kept
  end
  table.insert(items, e)
  redis.call('HSET', key, 'errors', '[' .. table.concat(items, ',') .. ']')
  if dropped > 0 then
    local omitted = (toint(redis.call('HGET', key, 'errors_omitted')) or 0) + dropped
    redis.call('HSET', key, 'errors_omitted', int(math.min(omitted, 2147483647)))
  end
end
local function publish(wake)
  for q in pairs(wake) do redis.call('PUBLISH', P .. 'wake', q) end
end
-- errtext is the message of an error caught by pcall.
local function errtext(e)
  if type(e) == 'table' then return tostring(e.err or e[1] or 'unknown error') end
  return tostring(e)
end
`

// The error history rule keeps the first entry and the newest; add_error
// needs room for both. This stops compiling if queue.MaxErrorHistory < 2.
const _ uint = queue.MaxErrorHistory - 2

// insertFields is the number of ARGV entries per job in insertScript.
const insertFields = 9

// insertChunk is the most keys or sorted-set members insertScript hands to
// one command: unpack puts every argument on Lua's C stack, which holds
// about 8000 values (LUAI_MAXCSTACK), so a ZADD of insertChunk members
// (2*insertChunk values) stays well inside it whatever the batch size.
const insertChunk = 1000

// insertScript stores a batch: ARGV[2] = n, then per job: id, kind, queue,
// priority, payload, max_retries, retry_delay_ms, timeout_ms, delay_us. It
// checks every ID, and the type of every index key it will write, before
// writing anything, so the batch is all or nothing.
//
// It costs one command per job (the job's HSET) plus a few per batch: the
// IDs are checked with one EXISTS per insertChunk keys (one EXISTS per key
// only when that finds one, to name it), and the index entries are
// gathered per key and written with one ZADD (or SADD) per key and
// insertChunk members, since a command's fixed cost inside a script is
// larger than the cost of one more member.
// Returns {'ok'} or {'dup', id}; a wrong-typed index key is an error reply.
var insertScript = goredis.NewScript(prelude + `
local n = tonumber(ARGV[2])
local chunk = ` + strconv.Itoa(insertChunk) + `
-- Read and check: IDs new and distinct; the keys of every queue named.
local seen, jkeys, qk, qlist = {}, {}, {}, {}
for i = 1, n do
  local b = 3 + (i - 1) * 9
  local id, q = ARGV[b], ARGV[b + 2]
  if seen[id] then return {'dup', id} end
  seen[id] = true
  jkeys[i] = jobkey(id)
  if not qk[q] then
    qk[q] = {available = idxkey('available', q), scheduled = idxkey('scheduled', q), avail = availkey(q)}
    table.insert(qlist, q)
  end
end
for c = 1, n, chunk do
  local e = math.min(c + chunk - 1, n)
  if redis.call('EXISTS', unpack(jkeys, c, e)) > 0 then
    for i = c, e do
      if redis.call('EXISTS', jkeys[i]) == 1 then return {'dup', ARGV[3 + (i - 1) * 9]} end
    end
  end
end
local function want(key, typ)
  local t = redis.call('TYPE', key)
  t = t.ok or t
  if t ~= 'none' and t ~= typ then
    return redis.error_reply('WRONGTYPE tasq insert: key ' .. key .. ' is a ' .. tostring(t) .. ', not a ' .. typ .. '; nothing of this batch was stored')
  end
end
local bad = want(P .. 'jobs', 'zset') or want(P .. 'delayed', 'zset') or want(P .. 'queues', 'set')
if bad then return bad end
for _, q in ipairs(qlist) do
  local k = qk[q]
  bad = want(k.available, 'zset') or want(k.scheduled, 'zset') or want(k.avail, 'zset')
  if bad then return bad end
end
-- Write: the hashes one by one, the index entries gathered per key (a
-- list {score, member, ...} with its length in .n) and added afterwards.
local now = now_us()
local snow = int(now)
local mprefix = string.format('%016d', now) .. ':' -- member(now, id) without the id
local jl, dl, wake = {n = 0}, {n = 0}, {}
for _, q in ipairs(qlist) do
  local k = qk[q]
  k.la, k.ls, k.lv = {n = 0}, {n = 0}, {n = 0}
end
-- push appends a score and a member to one of the gathered lists.
local function push(l, score, member)
  local m = l.n
  l[m + 1], l[m + 2], l.n = score, member, m + 2
end
for i = 1, n do
  local b = 3 + (i - 1) * 9
  local id, q, prio = ARGV[b], ARGV[b + 2], ARGV[b + 3]
  local delay = tonumber(ARGV[b + 8])
  local k = qk[q]
  local state, run_at = 'available', snow
  if delay > 0 then state, run_at = 'scheduled', int(now + delay) end
  redis.call('HSET', jkeys[i], 'id', id, 'kind', ARGV[b + 1], 'queue', q, 'state', state,
    'priority', prio, 'payload', ARGV[b + 4], 'attempt', '0', 'token', '0', 'max_retries', ARGV[b + 5],
    'retry_delay_ms', ARGV[b + 6], 'timeout_ms', ARGV[b + 7], 'run_at_us', run_at,
    'dispatched_at_us', snow, 'errors', '[]')
  push(jl, snow, id)
  if state == 'scheduled' then
    push(k.ls, snow, id)
    push(dl, run_at, id)
  else
    push(k.la, snow, id)
    push(k.lv, 0 - (tonumber(prio) or 0), mprefix .. id) -- make_available's entry: score -priority, member(run_at, id)
    wake[q] = true
  end
end
local function zadd(key, l)
  for c = 1, l.n, 2 * chunk do
    redis.call('ZADD', key, unpack(l, c, math.min(c + 2 * chunk - 1, l.n)))
  end
end
zadd(P .. 'jobs', jl)
zadd(P .. 'delayed', dl)
for _, q in ipairs(qlist) do
  local k = qk[q]
  zadd(k.available, k.la)
  zadd(k.scheduled, k.ls)
  zadd(k.avail, k.lv)
end
for c = 1, #qlist, chunk do
  redis.call('SADD', P .. 'queues', unpack(qlist, c, math.min(c + chunk - 1, #qlist)))
end
publish(wake)
return {'ok'}
`)

// claimReplyFields is the number of fields per job in claimScript's reply.
const claimReplyFields = 11

// claimScript: ARGV[2] queue, [3] worker, [4] limit, [5] lease_us, [6] the
// number of kinds k, [7 .. 6+k] the kinds (none: any kind). It claims up to
// limit available jobs (highest priority, then oldest) of those kinds: marks
// each running with the lease, counts the attempt, and gives it a new claim
// token (HINCRBY token 1: it only grows; nothing else writes it). Jobs of
// other kinds are skipped, not removed, so they wait for a worker that knows
// them. Entries whose job is gone or no longer available are dropped.
//
// The work of one call is bounded: it inspects at most limit*4+100 entries
// of the available set, so a claim stays cheap even behind a long run of
// jobs of kinds this worker does not know; when that run is longer than the
// bound, the claim comes back short (or empty) and those jobs wait for the
// workers that know their kinds.
//
// A job whose attempt field is not an integer is claimed with the field
// left as it is; a job whose token field is not an integer gets the server's
// time in microseconds as its token (larger than any counter before it) and
// a note. Go marks both invalid, and the worker fails them with the reason.
//
// Returns per job {id, token, kind, payload, priority, attempt, max_retries,
// retry_delay_ms, timeout_ms, dispatched_at_us, note}.
var claimScript = goredis.NewScript(prelude + `
local q, worker, limit, lease = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local nk = tonumber(ARGV[6])
if limit <= 0 then return {} end
local kinds = nil
if nk > 0 then
  kinds = {}
  for i = 1, nk do kinds[ARGV[6 + i]] = true end
end
local budget = limit * 4 + 100
local uuidpat = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local now = now_us()
local expires = now + lease
local ak = availkey(q)
local out = {}
-- Skipped entries stay at the front of what is left, so the next page
-- starts after them.
local skipped, scanned = 0, 0
while #out < limit and scanned < budget do
  local page = math.min(budget - scanned, math.max(limit - #out, kinds and 64 or 1))
  local ms = redis.call('ZRANGE', ak, skipped, skipped + page - 1)
  if #ms == 0 then break end
  for _, m in ipairs(ms) do
    scanned = scanned + 1
    local id = string.sub(m, (string.find(m, ':', 1, true) or 0) + 1)
    local key = jobkey(id)
    local f = false
    if string.find(id, uuidpat) then
      f = redis.pcall('HMGET', key, 'state', 'kind', 'attempt', 'payload', 'priority',
        'max_retries', 'retry_delay_ms', 'timeout_ms', 'dispatched_at_us')
      if type(f) ~= 'table' or f.err then f = false end
    end
    if (not f) or f[1] ~= 'available' then
      redis.call('ZREM', ak, m) -- the job is gone, not a hash, or no longer available
    elseif kinds and f[2] and f[2] ~= '' and not kinds[f[2]] then
      skipped = skipped + 1
    else
      local attempt = f[3] or ''
      local n = toint(attempt)
      if n then attempt = int(n + 1) end
      redis.call('ZREM', ak, m)
      redis.call('ZADD', P .. 'running', expires, id)
      move(id, q, 'available', 'running', f[9])
      redis.call('HSET', key, 'state', 'running', 'attempt', attempt, 'attempted_at_us', int(now),
        'attempted_by', worker, 'lease_expires_at_us', int(expires))
      local note = ''
      local token = redis.pcall('HINCRBY', key, 'token', 1)
      if type(token) ~= 'number' then
        local old = redis.call('HGET', key, 'token') or ''
        token = now
        redis.call('HSET', key, 'token', int(token))
        note = 'token ' .. string.format('%q', string.sub(old, 1, 64)) .. ' was not an integer (replaced by ' .. int(token) .. ')'
      end
      table.insert(out, {id, int(token), f[2] or '', f[4] or '', f[5] or '', attempt, f[6] or '',
        f[7] or '', f[8] or '', f[9] or '', note})
      if #out >= limit then break end
    end
  end
end
return out
`)

// finishFields is the number of ARGV entries per outcome in finishScript.
const finishFields = 9

// finishScript: ARGV[2] worker, [3] the error history cap
// (queue.MaxErrorHistory), [4] n, then per outcome: id, token, state,
// finishes, counts, runs_again, delay_us, error, result. The Go side
// decides everything (queue.Outcome's methods) and passes it as flags:
// finishes (1: set finished_at), counts (0: take the attempt back),
// runs_again (1: run_at = now + delay, on the delayed set; else, unless it
// finishes, available now at its old place in line), and result ("-": leave
// the result field alone; "+" followed by the result to store, which may be
// empty: delete the field).
//
// The completion guard: an outcome applies only while the job is running
// under that token for that worker. Each outcome runs under pcall, so one
// that raises an error (a key of the wrong type) does not stop the others;
// it reads and checks first and writes the index sets before the hash, so
// a failure leaves the job running and its Go fallback can still fail it.
// Returns {applied, {i, error, i, error, ...}} with i the outcome's index (1-based).
var finishScript = goredis.NewScript(prelude + `
local worker, cap, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_us()
local applied, wake, failed = 0, {}, {}
local function apply(b)
  local id, token, st = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local finishes, counts, runs_again = ARGV[b + 3] == '1', ARGV[b + 4] == '1', ARGV[b + 5] == '1'
  local delay, err, result = tonumber(ARGV[b + 6]), ARGV[b + 7], ARGV[b + 8]
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'token', 'attempted_by', 'queue', 'priority', 'run_at_us',
    'dispatched_at_us', 'attempt')
  if f[1] ~= 'running' or f[2] ~= token or f[3] ~= worker then return false end
  local q, att = f[4], toint(f[8])
  local run_at = nil
  if runs_again then
    run_at = now + delay
    redis.call('ZADD', P .. 'delayed', run_at, id)
  elseif not finishes then
    make_available(id, q, toint(f[5]), toint(f[6]))
    wake[q] = true
  end
  redis.call('ZREM', P .. 'running', id)
  move(id, q, 'running', st, f[7])
  if err ~= '' then add_error(key, att, now, err, cap) end
  redis.call('HSET', key, 'state', st)
  redis.call('HDEL', key, 'lease_expires_at_us')
  if att and not counts then redis.call('HSET', key, 'attempt', int(att - 1)) end
  if string.sub(result, 1, 1) == '+' then
    if #result > 1 then redis.call('HSET', key, 'result', string.sub(result, 2)) else redis.call('HDEL', key, 'result') end
  end
  if finishes then
    redis.call('HSET', key, 'finished_at_us', int(now))
  else
    redis.call('HDEL', key, 'finished_at_us')
  end
  if run_at then redis.call('HSET', key, 'run_at_us', int(run_at)) end
  return true
end
for i = 0, n - 1 do
  local ok, res = pcall(apply, 5 + i * 9)
  if not ok then
    table.insert(failed, i + 1)
    table.insert(failed, errtext(res))
  elseif res then
    applied = applied + 1
  end
end
publish(wake)
return {applied, failed}
`)

// extendScript: ARGV[2] worker, [3] lease_us, then pairs of job ID and
// token. Renews the leases that worker still holds: the job running under
// that token for that worker. Returns the 1-based indexes of the pairs
// whose lease is no longer held.
var extendScript = goredis.NewScript(prelude + `
local worker, lease = ARGV[2], tonumber(ARGV[3])
local now = now_us()
local expires = now + lease
local lost = {}
for i = 0, (#ARGV - 3) / 2 - 1 do
  local id, token = ARGV[4 + i * 2], ARGV[5 + i * 2]
  local key = jobkey(id)
  local f = redis.pcall('HMGET', key, 'state', 'token', 'attempted_by')
  if type(f) == 'table' and not f.err and f[1] == 'running' and f[2] == token and f[3] == worker then
    redis.call('ZADD', P .. 'running', expires, id)
    redis.call('HSET', key, 'lease_expires_at_us', int(expires))
  else
    table.insert(lost, i + 1)
  end
end
return lost
`)

// maintainScript: ARGV[2] batch, [3] and [4] the text of a lease-expiry
// error before and after the worker's ID (queue.LeaseExpiredText), [5] the
// error history cap (queue.MaxErrorHistory). Makes up
// to batch due scheduled/retryable jobs available, and hands back up to
// batch running jobs whose lease has expired, noting it in their error
// history (the attempt still counts; the token stays, so the next claim
// gets a larger one). Returns {promoted, rescued}.
var maintainScript = goredis.NewScript(prelude + `
local batch = tonumber(ARGV[2])
local expired_before, expired_after, cap = ARGV[3], ARGV[4], tonumber(ARGV[5])
local now = now_us()
local wake = {}
local promoted, rescued = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', int(now), 'LIMIT', 0, batch)) do
  redis.call('ZREM', P .. 'delayed', id)
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us')
  if f[1] == 'scheduled' or f[1] == 'retryable' then
    make_available(id, f[2], toint(f[3]), toint(f[4]) or now)
    move(id, f[2], f[1], 'available', f[5])
    redis.call('HSET', key, 'state', 'available')
    wake[f[2]] = true
    promoted = promoted + 1
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. int(now), 'LIMIT', 0, batch)) do
  redis.call('ZREM', P .. 'running', id)
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us', 'attempt', 'attempted_by')
  if f[1] == 'running' then
    local by = f[7]
    if (not by) or by == '' then by = '?' end
    make_available(id, f[2], toint(f[3]), toint(f[4]) or now)
    move(id, f[2], 'running', 'available', f[5])
    redis.call('HSET', key, 'state', 'available')
    redis.call('HDEL', key, 'lease_expires_at_us')
    add_error(key, toint(f[6]), now, expired_before .. string.sub(by, 1, 256) .. expired_after, cap)
    wake[f[2]] = true
    rescued = rescued + 1
  end
end
publish(wake)
return {promoted, rescued}
`)

// The operator scripts take ARGV[2] = job ID and return {'ok'},
// {'missing'} or {'state', current state}.

// retryScript makes a failed, cancelled, retryable or scheduled job
// available now with attempt 0 (a fresh retry budget); its error history
// and its token are kept, so the next claim gets a larger token and an
// execution of it still running somewhere can never finish the new attempt.
var retryScript = goredis.NewScript(prelude + `
local id = ARGV[2]
local key = jobkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'dispatched_at_us')
local st = f[1]
if not st then return {'missing'} end
if st ~= 'failed' and st ~= 'cancelled' and st ~= 'retryable' and st ~= 'scheduled' then return {'state', st} end
local now = now_us()
redis.call('ZREM', P .. 'delayed', id)
redis.call('HSET', key, 'state', 'available', 'attempt', '0', 'run_at_us', int(now))
redis.call('HDEL', key, 'finished_at_us', 'lease_expires_at_us')
make_available(id, f[2], toint(f[3]), now)
move(id, f[2], st, 'available', f[4])
publish({[f[2]] = true})
return {'ok'}
`)

// cancelScript cancels a job that has not finished; ARGV[3] is the error
// history cap (queue.MaxErrorHistory). For a running job it PUBLISHes
// "cancel <id> <token>" on <prefix>ctrl, so that its worker cancels the
// Handle at once (see Listen); the worker's outcome is refused by the
// completion guard either way.
var cancelScript = goredis.NewScript(prelude + `
local id, cap = ARGV[2], tonumber(ARGV[3])
local key = jobkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us', 'attempt', 'token')
local st = f[1]
if not st then return {'missing'} end
if st == 'available' then
  redis.call('ZREM', availkey(f[2]), member(toint(f[4]) or 0, id))
elseif st == 'scheduled' or st == 'retryable' then
  redis.call('ZREM', P .. 'delayed', id)
elseif st == 'running' then
  redis.call('ZREM', P .. 'running', id)
else
  return {'state', st}
end
local now = now_us()
redis.call('HSET', key, 'state', 'cancelled', 'finished_at_us', int(now))
redis.call('HDEL', key, 'lease_expires_at_us')
add_error(key, toint(f[6]), now, 'cancelled by operator', cap)
move(id, f[2], st, 'cancelled', f[5])
if st == 'running' and toint(f[7]) then
  redis.call('PUBLISH', P .. 'ctrl', 'cancel ' .. id .. ' ' .. f[7])
end
return {'ok'}
`)

// deleteScript removes a job that is not running, and forgets its queue
// once the queue has no jobs left.
var deleteScript = goredis.NewScript(prelude + `
local id = ARGV[2]
local key = jobkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'run_at_us')
local st, q = f[1], f[2]
if not st then return {'missing'} end
if st == 'running' then return {'state', st} end
if st == 'available' then
  redis.call('ZREM', availkey(q), member(toint(f[3]) or 0, id))
elseif st == 'scheduled' or st == 'retryable' then
  redis.call('ZREM', P .. 'delayed', id)
end
redis.call('ZREM', idxkey(st, q), id)
redis.call('ZREM', P .. 'jobs', id)
redis.call('DEL', key)
for _, s in ipairs({` + luaStates() + `}) do
  if redis.call('EXISTS', idxkey(s, q)) == 1 then return {'ok'} end
end
redis.call('SREM', P .. 'queues', q)
return {'ok'}
`)

// luaStates lists the job states as Lua string literals.
func luaStates() string {
	s := make([]string, len(queue.States))
	for i, st := range queue.States {
		s[i] = "'" + string(st) + "'"
	}
	return strings.Join(s, ", ")
}
