package redisstore

import "github.com/redis/go-redis/v9"

// The store's Lua scripts. Each runs atomically in Redis, so that an
// announce, with its address binding check, its limits, the expiry of its
// swarm and its answer, is one step that replicas sharing the Redis cannot
// interleave, and one round trip (EVALSHA).
//
// The data, under the key prefix P, for a swarm with the info hash H (40
// lower-case hex digits):
//
//	P s:H:p  hash    peer ID (20 raw bytes) -> "<ip> <port> <left> <last seen, µs>",
//	                 and " <location>" after it for a peer with one
//	P s:H:t  zset    peer ID -> last seen (µs): the swarm's peers, oldest first
//	P s:H:m  hash    c -> live peers with nothing left, d -> Downloaded
//	P swarms zset    H -> last announce to the swarm (µs), the latest score
//	                 of its peers
//	P peers  zset    H .. peer ID -> last seen (µs): every peer of every swarm
//
// The last-seen scores of a complete peer are moved forward by the seed
// TTL less the peer TTL, so that every liveness test compares with one
// cutoff, now less the peer TTL, whatever the peer's kind.
//
// A location is a tracker.ValidLocation label, which holds no spaces. An
// entry without one is written as before locations existed, so that
// entries old trackers wrote read back with no location; a tracker from
// before locations cannot read an entry with one, so replicas sharing a
// prefix must be upgraded together.
//
// Times are Redis's (TIME), so that the replicas' clocks do not matter. A
// peer is live while its last announce is less than the TTL ago, a swarm
// while its last announce is: the two global sets count the live ones
// exactly with ZCOUNT (O(log n)), which is what the limits compare, so an
// expired entry never holds a place even before it is reclaimed. Expired
// peers leave their swarm whenever the swarm is touched; the janitor
// (reclaimScript) removes what is left from swarms nobody touches. Every
// key expires by itself (PEXPIRE) a little after the TTL, so that a Redis
// no tracker uses any more empties itself.
//
// The scripts name the keys of other swarms only in reclaimScript, which
// builds them from the prefix: the store runs on one Redis server (or a
// primary with replicas), not on Redis Cluster.

// common holds the helpers every script starts with. KEYS are, in order,
// the swarm's p, t and m keys, then the swarms and peers sets (reclaim and
// stats take only the last two).
const common = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%d', n) end
local function ip_of(v) return string.match(v, '^(%S+)') end
local function complete(v) return string.match(v, '^%S+ %d+ (%d+)') == '0' end
-- batch bounds the arguments of one command (Lua's unpack has a limit).
local batch = 1000

-- expire drops the peers of the swarm ih last seen at or before cutoff.
local function expire(kp, kt, km, kall, ih, cutoff)
  while true do
    local ids = redis.call('ZRANGEBYSCORE', kt, '-inf', fmt(cutoff), 'LIMIT', 0, batch)
    if #ids == 0 then return end
    local vals = redis.call('HMGET', kp, unpack(ids))
    local seeders = 0
    local members = {}
    for i, id in ipairs(ids) do
      if vals[i] and complete(vals[i]) then seeders = seeders + 1 end
      members[i] = ih .. id
    end
    redis.call('HDEL', kp, unpack(ids))
    redis.call('ZREM', kt, unpack(ids))
    redis.call('ZREM', kall, unpack(members))
    if seeders > 0 then redis.call('HINCRBY', km, 'c', -seeders) end
    if #ids < batch then return end
  end
end

-- live reports whether the swarm ih had an announce after cutoff, and
-- drops its expired peers. A swarm that is not live loses its keys.
local function live(ih, cutoff)
  local touched = redis.call('ZSCORE', KEYS[4], ih)
  local alive = touched and tonumber(touched) > cutoff
  if alive then
    expire(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ih, cutoff)
  elseif touched then
    expire(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ih, cutoff)
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
    redis.call('ZREM', KEYS[4], ih)
  end
  return alive
end

-- answer is {code, complete, downloaded, peers, sample}: the counts of the
-- live swarm, and a sample of up to limit of its peers as field, value
-- pairs (an empty array for limit 0).
local function answer(code, limit)
  local m = redis.call('HMGET', KEYS[3], 'c', 'd')
  local sample = {}
  if limit > 0 then sample = redis.call('HRANDFIELD', KEYS[1], limit, 'WITHVALUES') end
  return {code, tonumber(m[1]) or 0, tonumber(m[2]) or 0, redis.call('HLEN', KEYS[1]), sample}
end
`

// Result codes, the first element of announceScript's and removeScript's
// replies.
const (
	codeOK          = 0
	codeConflict    = 1 // followed by the IP the entry is bound to
	codeMaxSwarms   = 2
	codeMaxPeers    = 3
	codeMaxPerSwarm = 4
)

// announceScript records an announce and answers it.
//
// ARGV: TTL (µs), max swarms, max peers, max peers per swarm, info hash
// (hex), peer ID, IP, "<port> <left>", "1" if left is 0, the sample size
// (0: none), the keys' expiry (ms), how much longer a complete peer's
// entry lasts than an incomplete one's (µs), the location ("" for none).
//
// Reply: {0, complete, downloaded, peers, {id1, value1, ...}}, or {1, ip}
// for an ID bound to another address, or {2}, {3}, {4} for a limit.
var announceScript = redis.NewScript(common + `
local now = now_us()
local cutoff = now - tonumber(ARGV[1])
local ih, id, ip = ARGV[5], ARGV[6], ARGV[7]
local seeder = ARGV[9] == '1'
local alive = live(ih, cutoff)
if not alive then
  -- Leftovers of a swarm the global set lost track of.
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
local cur = alive and redis.call('HGET', KEYS[1], id)
if cur then
  local bound = ip_of(cur)
  if bound ~= ip then return {1, bound} end
  local was = complete(cur)
  if was and not seeder then
    redis.call('HINCRBY', KEYS[3], 'c', -1)
  elseif seeder and not was then
    redis.call('HINCRBY', KEYS[3], 'c', 1)
    redis.call('HINCRBY', KEYS[3], 'd', 1)
  end
else
  -- A new peer, perhaps in a new swarm: the limits count live entries.
  local after = '(' .. fmt(cutoff)
  if alive then
    if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {4} end
  elseif redis.call('ZCOUNT', KEYS[4], after, '+inf') >= tonumber(ARGV[2]) then
    return {2}
  end
  if redis.call('ZCOUNT', KEYS[5], after, '+inf') >= tonumber(ARGV[3]) then return {3} end
  if seeder then redis.call('HINCRBY', KEYS[3], 'c', 1) end
end
local nows = fmt(now)
-- A complete peer's entry lasts the seed TTL: its scores are set as if it
-- had announced that much later, so that one cutoff serves both.
local score = nows
if seeder then score = fmt(now + tonumber(ARGV[12])) end
local v = ip .. ' ' .. ARGV[8] .. ' ' .. nows
if ARGV[13] ~= '' then v = v .. ' ' .. ARGV[13] end
redis.call('HSET', KEYS[1], id, v)
redis.call('ZADD', KEYS[2], score, id)
redis.call('ZADD', KEYS[5], score, ih .. id)
redis.call('ZADD', KEYS[4], 'GT', score, ih)
for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[11]) end
return answer(0, tonumber(ARGV[10]))
`)

// removeScript removes a peer on its stop.
//
// ARGV: TTL (µs), info hash (hex), peer ID, IP the stop came from.
//
// Reply: {0}, or {1, ip} when the entry is bound to another address.
var removeScript = redis.NewScript(common + `
local cutoff = now_us() - tonumber(ARGV[1])
local ih, id = ARGV[2], ARGV[3]
if not live(ih, cutoff) then return {0} end
local cur = redis.call('HGET', KEYS[1], id)
if not cur then return {0} end
local bound = ip_of(cur)
if bound ~= ARGV[4] then return {1, bound} end
redis.call('HDEL', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[5], ih .. id)
if complete(cur) then redis.call('HINCRBY', KEYS[3], 'c', -1) end
return {0}
`)

// answerScript answers Peers and Counts.
//
// ARGV: TTL (µs), info hash (hex), sample size (0: none).
//
// Reply: {0, complete, downloaded, peers, {id1, value1, ...}}; {} for a
// swarm that is not live.
var answerScript = redis.NewScript(common + `
local cutoff = now_us() - tonumber(ARGV[1])
if not live(ARGV[2], cutoff) then return {} end
return answer(0, tonumber(ARGV[3]))
`)

// statsScript counts the live swarms and peers.
//
// KEYS: the swarms and peers sets. ARGV: TTL (µs).
//
// Reply: {swarms, peers}.
var statsScript = redis.NewScript(`
local t = redis.call('TIME')
local after = '(' .. string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[1]))
return {redis.call('ZCOUNT', KEYS[1], after, '+inf'), redis.call('ZCOUNT', KEYS[2], after, '+inf')}
`)

// reclaimScript removes up to a batch of expired peers, and a batch of
// swarms without an announce for the TTL (whose peers have all expired),
// from wherever they are.
//
// KEYS: the swarms and peers sets. ARGV: TTL (µs), key prefix, batch.
//
// Reply: {peers removed, swarms removed}.
var reclaimScript = redis.NewScript(`
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[1])
local prefix, n = ARGV[2], tonumber(ARGV[3])
local function complete(v) return string.match(v, '^%S+ %d+ (%d+)') == '0' end
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', cutoff), 'LIMIT', 0, n)
for _, m in ipairs(members) do
  local ih, id = string.sub(m, 1, 40), string.sub(m, 41)
  local kp, kt, km = prefix .. 's:' .. ih .. ':p', prefix .. 's:' .. ih .. ':t', prefix .. 's:' .. ih .. ':m'
  local seen = redis.call('ZSCORE', kt, id)
  if seen and tonumber(seen) <= cutoff then
    local v = redis.call('HGET', kp, id)
    redis.call('HDEL', kp, id)
    redis.call('ZREM', kt, id)
    if v and complete(v) then redis.call('HINCRBY', km, 'c', -1) end
  end
end
if #members > 0 then redis.call('ZREM', KEYS[2], unpack(members)) end
local swarms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', cutoff), 'LIMIT', 0, n)
for _, ih in ipairs(swarms) do
  redis.call('DEL', prefix .. 's:' .. ih .. ':p', prefix .. 's:' .. ih .. ':t', prefix .. 's:' .. ih .. ':m')
end
if #swarms > 0 then redis.call('ZREM', KEYS[1], unpack(swarms)) end
return {#members, #swarms}
`)
