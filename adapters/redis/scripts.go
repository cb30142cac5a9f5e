package redis

import (
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
const prelude = `
local P = ARGV[1]
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function int(n) return string.format('%d', n) end
local function jobkey(id) return P .. 'job:' .. id end
local function availkey(q) return P .. 'avail:' .. q end
local function idxkey(st, q) return P .. 'idx:' .. st .. ':' .. q end
-- Members of an available set sort by run_at, then ID, within one priority.
local function member(run_at, id) return string.format('%016d', run_at) .. ':' .. id end
local function make_available(id, q, prio, run_at)
  redis.call('ZADD', availkey(q), 0 - prio, member(run_at, id))
end
-- move re-files a job in the per-state index; dispatched is its score.
local function move(id, q, from, to, dispatched)
  redis.call('ZREM', idxkey(from, q), id)
  redis.call('ZADD', idxkey(to, q), dispatched, id)
end
-- add_error appends {"attempt","at_us","error"} to the job's JSON error history.
local function add_error(key, attempt, at, msg)
  local e = '{"attempt":' .. int(attempt) .. ',"at_us":' .. int(at) .. ',"error":' .. cjson.encode(msg) .. '}'
  local errs = redis.call('HGET', key, 'errors')
  if (not errs) or errs == '' or errs == '[]' then
    errs = '[' .. e .. ']'
  else
    errs = string.sub(errs, 1, -2) .. ',' .. e .. ']'
  end
  redis.call('HSET', key, 'errors', errs)
end
local function publish(wake)
  for q in pairs(wake) do redis.call('PUBLISH', P .. 'wake', q) end
end
`

// insertFields is the number of ARGV entries per job in insertScript.
const insertFields = 9

// insertScript stores a batch: ARGV[2] = n, then per job: id, kind, queue,
// priority, payload, max_retries, retry_delay_ms, timeout_ms, delay_us. It
// checks every ID before writing anything, so the batch is all or nothing.
// Returns {'ok'} or {'dup', id}.
var insertScript = goredis.NewScript(prelude + `
local n = tonumber(ARGV[2])
local seen = {}
for i = 0, n - 1 do
  local id = ARGV[3 + i * 9]
  if seen[id] or redis.call('EXISTS', jobkey(id)) == 1 then return {'dup', id} end
  seen[id] = true
end
local now = now_us()
local wake = {}
for i = 0, n - 1 do
  local b = 3 + i * 9
  local id, q, prio = ARGV[b], ARGV[b + 2], ARGV[b + 3]
  local delay = tonumber(ARGV[b + 8])
  local run_at = now + delay
  local state = 'available'
  if delay > 0 then state = 'scheduled' end
  redis.call('HSET', jobkey(id), 'id', id, 'kind', ARGV[b + 1], 'queue', q, 'state', state,
    'priority', prio, 'payload', ARGV[b + 4], 'attempt', '0', 'max_retries', ARGV[b + 5],
    'retry_delay_ms', ARGV[b + 6], 'timeout_ms', ARGV[b + 7], 'run_at_us', int(run_at),
    'dispatched_at_us', int(now), 'errors', '[]')
  redis.call('ZADD', P .. 'jobs', now, id)
  redis.call('ZADD', idxkey(state, q), now, id)
  redis.call('SADD', P .. 'queues', q)
  if state == 'scheduled' then
    redis.call('ZADD', P .. 'delayed', run_at, id)
  else
    make_available(id, q, tonumber(prio), run_at)
    wake[q] = true
  end
end
publish(wake)
return {'ok'}
`)

// claimScript: ARGV[2] queue, [3] worker, [4] limit, [5] lease_us. Pops up
// to limit available jobs (highest priority, then oldest), marks them
// running with the lease, and returns per job {id, kind, payload, priority,
// attempt, max_retries, retry_delay_ms, timeout_ms, dispatched_at_us}.
var claimScript = goredis.NewScript(prelude + `
local q, worker, limit, lease = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if limit <= 0 then return {} end
local now = now_us()
local ak = availkey(q)
local out = {}
for _, m in ipairs(redis.call('ZRANGE', ak, 0, limit - 1)) do
  redis.call('ZREM', ak, m)
  local id = string.sub(m, (string.find(m, ':', 1, true) or 0) + 1)
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'kind', 'payload', 'priority',
    'max_retries', 'retry_delay_ms', 'timeout_ms', 'dispatched_at_us')
  if f[1] == 'available' then
    local attempt = tonumber(f[2]) + 1
    local expires = now + lease
    redis.call('HSET', key, 'state', 'running', 'attempt', int(attempt), 'attempted_at_us', int(now),
      'attempted_by', worker, 'lease_expires_at_us', int(expires))
    redis.call('ZADD', P .. 'running', expires, id)
    move(id, q, 'available', 'running', f[9])
    table.insert(out, {id, f[3], f[4], f[5], int(attempt), f[6], f[7], f[8], f[9]})
  end
end
return out
`)

// finishFields is the number of ARGV entries per outcome in finishScript.
const finishFields = 6

// finishScript: ARGV[2] worker, [3] n, then per outcome: id, attempt,
// state, result, error, delay_us. The completion guard: an outcome applies
// only while the job is running that attempt for that worker. Handing a job
// back (available/scheduled) un-counts the attempt. Returns how many applied.
var finishScript = goredis.NewScript(prelude + `
local worker, n = ARGV[2], tonumber(ARGV[3])
local now = now_us()
local applied, wake = 0, {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local id, attempt, st = ARGV[b], tonumber(ARGV[b + 1]), ARGV[b + 2]
  local result, err, delay = ARGV[b + 3], ARGV[b + 4], tonumber(ARGV[b + 5])
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'attempted_by', 'queue', 'priority', 'run_at_us', 'dispatched_at_us')
  if f[1] == 'running' and tonumber(f[2]) == attempt and f[3] == worker then
    local q, att = f[4], tonumber(f[2])
    redis.call('ZREM', P .. 'running', id)
    redis.call('HDEL', key, 'lease_expires_at_us')
    if err ~= '' then add_error(key, att, now, err) end
    redis.call('HSET', key, 'state', st)
    if st == 'available' or st == 'scheduled' then
      redis.call('HSET', key, 'attempt', int(att - 1))
    end
    if st == 'completed' then
      if result ~= '' then redis.call('HSET', key, 'result', result) else redis.call('HDEL', key, 'result') end
    end
    if st == 'completed' or st == 'failed' or st == 'cancelled' then
      redis.call('HSET', key, 'finished_at_us', int(now))
    else
      redis.call('HDEL', key, 'finished_at_us')
    end
    if st == 'retryable' or st == 'scheduled' then
      local run_at = now + delay
      redis.call('HSET', key, 'run_at_us', int(run_at))
      redis.call('ZADD', P .. 'delayed', run_at, id)
    elseif st == 'available' then
      make_available(id, q, tonumber(f[5]), tonumber(f[6]))
      wake[q] = true
    end
    move(id, q, 'running', st, f[7])
    applied = applied + 1
  end
end
publish(wake)
return applied
`)

// extendScript: ARGV[2] worker, [3] lease_us, [4...] job IDs. Renews the
// leases of the jobs that worker still runs; returns how many.
var extendScript = goredis.NewScript(prelude + `
local worker, lease = ARGV[2], tonumber(ARGV[3])
local now = now_us()
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'attempted_by')
  if f[1] == 'running' and f[2] == worker then
    local expires = now + lease
    redis.call('HSET', key, 'lease_expires_at_us', int(expires))
    redis.call('ZADD', P .. 'running', expires, id)
    n = n + 1
  end
end
return n
`)

// maintainScript: ARGV[2] batch. Makes up to batch due scheduled/retryable
// jobs available, and hands back up to batch running jobs whose lease has
// expired, noting it in their error history (the attempt still counts).
// Returns {promoted, rescued}.
var maintainScript = goredis.NewScript(prelude + `
local batch = tonumber(ARGV[2])
local now = now_us()
local wake = {}
local promoted, rescued = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', int(now), 'LIMIT', 0, batch)) do
  redis.call('ZREM', P .. 'delayed', id)
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us')
  if f[1] == 'scheduled' or f[1] == 'retryable' then
    redis.call('HSET', key, 'state', 'available')
    make_available(id, f[2], tonumber(f[3]), tonumber(f[4]))
    move(id, f[2], f[1], 'available', f[5])
    wake[f[2]] = true
    promoted = promoted + 1
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. int(now), 'LIMIT', 0, batch)) do
  redis.call('ZREM', P .. 'running', id)
  local key = jobkey(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us', 'attempt', 'attempted_by')
  if f[1] == 'running' then
    redis.call('HSET', key, 'state', 'available')
    redis.call('HDEL', key, 'lease_expires_at_us')
    add_error(key, tonumber(f[6]), now,
      'lease expired: worker ' .. (f[7] or '?') .. ' stopped renewing it (crashed or killed?)')
    make_available(id, f[2], tonumber(f[3]), tonumber(f[4]))
    move(id, f[2], 'running', 'available', f[5])
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
// available now with attempt 0; its error history is kept.
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
make_available(id, f[2], tonumber(f[3]), now)
move(id, f[2], st, 'available', f[4])
publish({[f[2]] = true})
return {'ok'}
`)

// cancelScript cancels a job that has not finished. A running job's worker
// then finds its outcome refused by the completion guard.
var cancelScript = goredis.NewScript(prelude + `
local id = ARGV[2]
local key = jobkey(id)
local f = redis.call('HMGET', key, 'state', 'queue', 'priority', 'run_at_us', 'dispatched_at_us', 'attempt')
local st = f[1]
if not st then return {'missing'} end
if st == 'available' then
  redis.call('ZREM', availkey(f[2]), member(tonumber(f[4]), id))
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
add_error(key, tonumber(f[6]), now, 'cancelled by operator')
move(id, f[2], st, 'cancelled', f[5])
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
  redis.call('ZREM', availkey(q), member(tonumber(f[3]), id))
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
