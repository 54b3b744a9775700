#!lua name=ringside
-- Ringside game logic as Redis Functions. Library version: 10 (see `version`, and VERSION in lua/src/lib.rs).
--
-- Every authoritative transition of a quiz room runs here, atomically, in the room's hash slot.
-- The edge and the engine only ever call these functions (lua/README.md has the full contract).
--
-- Calling convention (every function):
--   KEYS[1] = room key prefix  `room:{pNN}:CODE`   (ringside_protocol::keys::room)
--   KEYS[2] = timer stream     `timers:{pNN}`      (ringside_protocol::keys::room_timers)
--   The room's other keys are derived from KEYS[1] by suffix. They share its hash tag, so every call
--   touches one slot (a documented deviation from "declare every key"). Read-only functions accept KEYS[2]
--   and ignore it.
--   Randomness (codes, ids, tokens, secrets) comes from the caller's CSPRNG in ARGV; time comes from TIME.
--   Errors: `<code> <detail>` where <code> is a wire ErrorCode (ringside_protocol::ErrorCode) or the
--   internal `code_taken`. Replies: JSON text, the `data` of the protocol reply event, except `results`
--   and `game_export` (arrays: the caller builds the JSON).
--
-- Keys of one room (P = KEYS[1]); the count is constant per room plus one per question played:
--   P              hash    state, settings, current question, deadlines, seq, gen, counters; and
--                          "m:<playerId>" -> answerSecret of a member, from the join to the removal (v10;
--                          the edge verifies the answer HMAC with it; the answer path reads it as membership)
--   P:quiz         hash    the quiz copied at create: t<i> text, o<i> options, c<i> correct, ...
--   P:players      hash    playerId -> "<avatar>:<name>"
--   P:names        hash    "k:<folded name>" -> playerId, "p:<playerId>" -> folded name
--   P:sess         hash    playerId -> sessionToken
--   P:secret       hash    playerId -> answerSecret of a player who joined under a library older than v10
--   P:viol         hash    playerId -> anti-cheat violations
--   P:kicked       hash    "p:<playerId>" -> reason, "s:<sessionToken>" -> playerId, "n:<folded name>" -> playerId
--   P:lb           zset    playerId -> total score (every player, from join, starting at 0)
--   P:recent       list    the last 50 joiners as PlayerInfo JSON, newest last
--   P:pend         list    joiners not yet announced by room:player:joined, PlayerInfo JSON (newest first, max 20)
--   P:conn         hash    presence: "e:<playerId>" -> connection epoch (absent = 0, the join's socket; +1 per
--                          reconnect), "a:<playerId>" -> 1 while the player is away (socket dropped: player_away)
--   P:presq        list    presence changes not yet announced by room:player:presence, "a:<pid>" (away) or
--                          "b:<pid>" (back), newest first, max 20
--   P:log          stream  room events, id "<seq>-0", field e = the envelope JSON; capped ~1000
--   P:q:<i>        hash    question i: n answered, d<k> per option, a:<pid> "idx:ms:points:streak"
--                          (streak = consecutive correct answers ending here, 0 when wrong),
--                          r:<pid> refused answer events
--   P:ev           sharded pub/sub channel of room events (same envelope JSON as the log)
-- Per partition (same hash tag): timers:{pNN} (schedules for the engine), results:{pNN} (one entry per
-- ended game: room, roomId, reason, ended — read by the control plane's results writer) and rooms:{pNN}
-- (sorted set of the live rooms: code → created ms, for the ops view).

local VERSION = 10
local LOG_MAX = 1000            -- entries kept in P:log (approximate trim)
local ROOM_TTL = 7200           -- s: a room with no transition for this long is abandoned
local END_TTL = 300             -- s: reconnect window after game:end
local ABANDON_MARGIN = 300      -- s: a room whose expiry is this close is ended as abandoned (results kept)
local ABANDON_CHECK_MS = 1800000 -- the abandon check runs at least this often (timer entries outlive it)
local HOLD_MAX_MS = 3600000     -- results_hold: longest hold of an ended room for the results writer
local EXPORT_MAX = 1000         -- players per game_export call
local GRACE_MS = 500            -- ringside_protocol::limits::ANSWER_GRACE_MS
local SHOW_LEAD_MS = 2000       -- fair start: a question opens (its show is published) up to this long before
                                -- its showAt, within the countdown or the reveal pause (docs/protocol.md §7.3)
local SHOW_LEAD_MIN_SPAN = 1000 -- ... when that pause is at least this long (shorter: shown when it opens)
local TOP_N = 10                -- limits::LEADERBOARD_TOP_N
local RECENT_MAX = 50           -- players[] in room:join:ack
local JOIN_NAMES = 20           -- players[] in room:player:joined
local RECENT_FROM = '-' .. RECENT_MAX      -- the same as texts, for LTRIM
local JOIN_NAMES_LAST = JOIN_NAMES - 1 .. ''
local JOIN_EVERY_MS = 1000      -- at most one room:player:joined per room per second ...
local JOIN_FRAMES_PER_S = 20000 -- ... and at most ~this many lobby frames per second in a big room
local PROGRESS_EVERY_MS = 1000  -- at most one game:answer:progress per room per second ...
local PROGRESS_FRAMES_PER_S = 25000 -- ... and at most ~this many progress frames per second in a big room
local ANSWER_EVENTS = 2         -- limits::ANSWER_EVENTS_PER_QUESTION
local VIOLATIONS_KICK = 5       -- limits::VIOLATIONS_BEFORE_KICK
local MAX_EXTEND_S = 120        -- limits::MAX_EXTEND_SECONDS
local RESULTS_MAX = 1000        -- playerIds per `results` call
local RESULTS_KEEP = 3          -- `results` of the last scored question and of this many before it
local SCORE_STEP = 500          -- players scored per call at most (a reveal, then `score` timer fires)
local SCORE_SCAN = 250          -- ZSCAN COUNT of one scoring step
local NO_ANSWER = 'x'           -- a:<pid> of a player refused ANSWER_EVENTS times without an answer
local TIMER_KEEP_MS = 3600000   -- timer stream entries older than this are trimmed (MINID)
local MAX_OPEN_MS = 1800000     -- a question's remaining time may not exceed this (extend): every schedule
                                -- stays due well inside TIMER_KEEP_MS
local PLAYERS_PAGE_MAX = 500    -- players per room_players call
local ROOMS_LIST_MAX = 1000     -- rooms per rooms_list call
local MAX_QUESTIONS = 100
local MAX_OPTIONS = 8

local FIXED = { '', ':quiz', ':players', ':names', ':sess', ':secret', ':viol', ':kicked',
  ':lb', ':recent', ':pend', ':log', ':conn', ':presq' }

-- ───────────────────────────── helpers ─────────────────────────────

-- A refusal: unwound by `api` into `redis.error_reply('<code> <detail>')`. It is raised as a Redis error
-- table ({err = ...}): Redis 7.0.15 crashes (SIGSEGV in luaCallFunction) when a function raises a table
-- without `err`, so even a refusal that escaped `api` must be a well-formed error.
local function fail(code, detail)
  local msg = code .. ' ' .. (detail or code)
  error({ err = msg }, 0)
end

-- Integers as JSON/Redis arguments without exponent notation.
local function int(n)
  return string.format('%d', n)
end

-- The text of a small whole number (points of one question, a streak), kept once made: the scoring walk
-- writes two per player, and a Lua number concatenated into a string goes through printf's floating-point
-- path (%.14g, ~1,500 instructions; callgrind, perf/lua.md). At most SMALL_INT_MAX texts are kept.
local SMALL_INT_MAX = 4096
local small_int, small_int_n = {}, 0
local function int_text(n)
  local t = small_int[n]
  if t then return t end
  t = string.format('%d', n)
  if small_int_n < SMALL_INT_MAX then small_int[n], small_int_n = t, small_int_n + 1 end
  return t
end

-- A JSON string literal.
local function js(s)
  return cjson.encode(s)
end

local function jbool(b)
  if b then return 'true' end
  return 'false'
end

-- A JSON object from an array of already encoded "\"key\":value" members.
local function obj(members)
  return '{' .. table.concat(members, ',') .. '}'
end

local function kv(k, v)
  return '"' .. k .. '":' .. v
end

-- A JSON array from already encoded items (an empty table gives [] — never cjson's {}).
local function arr(items)
  return '[' .. table.concat(items, ',') .. ']'
end

-- redis.call, string.sub and string.byte as upvalues of the lone answer's path and the clock: a global
-- and a field lookup less per use (~90 instructions each). Captured at the first call (capture()): the
-- library's body runs where `string` is not reachable.
local rcall, ssub, sbyte
local function capture()
  rcall, ssub, sbyte = redis.call, string.sub, string.byte
  return rcall
end

-- TIME in milliseconds, as a number and as its decimal text, made from TIME's two texts with no
-- conversion but the seconds' once per second (clock_s): the milliseconds are the microseconds' text
-- less its last three digits. A `tonumber` of a text is glibc's strtod, twice (lua_isnumber, then
-- lua_tonumber), and a `string.format` is sprintf: the lone answer's clock cost ~4,000 of its ~80,000
-- instructions that way (callgrind, perf/lua.md).
local clock_s, clock_s_ms = nil, 0
local MS_PAD = { '00', '0', '' }
local function now_ms_text()
  local t = (rcall or capture())('TIME')
  local s, us = t[1], t[2]
  if s ~= clock_s then clock_s, clock_s_ms = s, tonumber(s) * 1000 end
  local n = #us - 3 -- the milliseconds' digits
  if n <= 0 then return clock_s_ms, s .. '000' end
  local a, b, c = sbyte(us, 1, n)
  local ms = a - 48
  if b then ms = ms * 10 + b - 48 end
  if c then ms = ms * 10 + c - 48 end
  return clock_s_ms + ms, s .. MS_PAD[n] .. ssub(us, 1, n)
end

local function now_ms()
  return (now_ms_text())
end

-- HMGET into a table keyed by field name; missing fields are nil.
local function hm(key, fields)
  local vals = redis.call('HMGET', key, unpack(fields))
  local out = {}
  for i, f in ipairs(fields) do
    if vals[i] then out[f] = vals[i] end
  end
  return out
end

local function num(v, default)
  local n = tonumber(v)
  if n == nil then return default end
  return n
end

-- A non-negative integer argument, or a bad_payload refusal.
local function arg_int(v, what, lo, hi)
  local n = tonumber(v)
  if n == nil or n ~= math.floor(n) or n < lo or n > hi then
    fail('bad_payload', what .. ' must be an integer ' .. int(lo) .. '..' .. int(hi))
  end
  return n
end

-- Ids and tokens: caller-generated, [A-Za-z0-9_-], bounded length.
local function arg_id(v, what, minlen, maxlen)
  if type(v) ~= 'string' or #v < minlen or #v > maxlen or not string.find(v, '^[%w_%-]+$') then
    fail('bad_payload', what .. ' must be ' .. int(minlen) .. '..' .. int(maxlen) .. ' characters of [A-Za-z0-9_-]')
  end
  return v
end

-- Nickname rules (ringside_protocol::events::is_valid_name): well-formed UTF-8, 1..=24 Unicode scalar
-- values after trimming spaces, no control characters (C0, DEL, C1). Returns the trimmed name.
local function check_name(name)
  if type(name) ~= 'string' then fail('bad_name', 'name missing') end
  name = string.match(name, '^ *(.-) *$')
  if #name == 0 or #name > 96 then fail('bad_name', 'name must be 1..24 characters') end
  local count, i, len = 0, 1, #name
  while i <= len do
    local b = string.byte(name, i)
    local n, lo, hi = 0, 0x80, 0xBF
    if b < 0x80 then
      if b < 0x20 or b == 0x7F then fail('bad_name', 'control characters are not allowed') end
    elseif b >= 0xC2 and b <= 0xDF then
      n = 1
    elseif b >= 0xE0 and b <= 0xEF then
      n = 2
      if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F end
    elseif b >= 0xF0 and b <= 0xF4 then
      n = 3
      if b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end
    else
      fail('bad_name', 'name is not valid UTF-8')
    end
    for j = 1, n do
      local c = string.byte(name, i + j)
      if c == nil or c < (j == 1 and lo or 0x80) or c > (j == 1 and hi or 0xBF) then
        fail('bad_name', 'name is not valid UTF-8')
      end
    end
    if b == 0xC2 and string.byte(name, i + 1) <= 0x9F then
      fail('bad_name', 'control characters are not allowed')
    end
    count = count + 1
    i = i + n + 1
  end
  if count < 1 or count > 24 then fail('bad_name', 'name must be 1..24 characters') end
  return name
end

-- The call's room: parses KEYS, checks the timer stream shares the room's hash tag.
local function room_of(keys, need_timers)
  local P = keys[1]
  if type(P) ~= 'string' then fail('bad_payload', 'KEYS[1] must be the room key') end
  local tag, code = string.match(P, '^room:({p%d%d+}):([A-Z0-9]+)$')
  if not tag then fail('bad_payload', 'KEYS[1] must look like room:{pNN}:CODE') end
  local T = keys[2]
  if need_timers and T ~= 'timers:' .. tag then
    fail('bad_payload', 'KEYS[2] must be timers:' .. tag)
  end
  return { P = P, T = T, code = code, tag = tag, Q = P .. ':quiz' }
end

local function qkey(R, q)
  return R.P .. ':q:' .. int(q)
end

-- Sets the expiry of every fixed key of the room, plus question q's hash when q >= 0.
local function touch(R, ttl, q)
  for _, s in ipairs(FIXED) do
    redis.call('EXPIRE', R.P .. s, ttl)
  end
  if q and q >= 0 then redis.call('EXPIRE', qkey(R, q), ttl) end
end

-- Appends a room event to the log and publishes it, with the next seq. Returns the seq.
local function emit(R, name, data)
  local seq = redis.call('HINCRBY', R.P, 'seq', 1)
  local env = '{"event":"' .. name .. '","seq":' .. int(seq) .. ',"data":' .. data .. '}'
  redis.call('XADD', R.P .. ':log', 'MAXLEN', '~', LOG_MAX, int(seq) .. '-0', 'e', env)
  redis.call('SPUBLISH', R.P .. ':ev', env)
  return seq
end

-- Publishes a live tick on the room's channel: no seq and not in the log, so it takes nothing from the
-- log a reconnect replays from, and a newer one makes it moot. The edges deliver it to the members that
-- want it (the host, and sockets that opened with `/ws?progress=1`), not to every phone.
local function publish_live(R, name, data)
  redis.call('SPUBLISH', R.P .. ':ev', '{"event":"' .. name .. '","data":' .. data .. '}')
end

-- Writes a schedule into the partition's timer stream (read by the engine).
local function schedule(R, now, kind, q, gen, due, every)
  local args = { 'XADD', R.T, 'MINID', '~', int(now - TIMER_KEEP_MS), '*',
    'room', R.code, 'kind', kind, 'q', int(q), 'gen', int(gen), 'due', int(due) }
  if every then
    args[#args + 1] = 'every'
    args[#args + 1] = int(every)
  end
  redis.call(unpack(args))
end

local function ok_reply(event)
  return obj({ kv('event', js(event)) })
end

local function require_room(r)
  if not r.state then fail('room_not_found', 'no live room has this game code') end
end

local function require_host(r, token)
  if type(token) ~= 'string' or token == '' or r.host ~= token then
    fail('not_host', 'only the host may do this')
  end
end

-- "<avatar>:<name>" -> avatar, name
local function split_player(v)
  local a, n = string.match(v, '^(%d+):(.*)$')
  return a, n
end

local function player_json(pid, v)
  local a, n = split_player(v)
  return obj({ kv('id', js(pid)), kv('name', js(n)), kv('avatar', a) })
end

-- A stored answer: "idx:ms:points:streak" once its question is scored (at the reveal), "idx:ms:remainingMs"
-- before (answer_submit writes it); points and streak are nil then. NO_ANSWER and nil give nil.
local function split_answer(v)
  if not v then return nil end
  local a, ms, pts, st = string.match(v, '^(%d+):(%d+):(%-?%d+):(%-?%d+)$')
  if a then return tonumber(a), tonumber(ms), tonumber(pts), tonumber(st) end
  a, ms = string.match(v, '^(%d+):(%d+):%-?%d+$')
  return tonumber(a), tonumber(ms), nil, nil
end

-- The streak after a question, from the player's stored answer to it (0: wrong or no answer).
-- Streaks are never reset in a loop: each answer record carries the streak it ends, computed from the
-- record of the previous question when its question is scored.
local function streak_of(answer)
  local _, _, _, st = split_answer(answer)
  return st or 0
end

-- The room fields answer_submit needs, in one HMGET (qno, the open question's option count, is copied
-- from the quiz when the question opens, so the hot path reads one hash). Scoring needs more: it runs at
-- the reveal (SCORE_FIELDS).
-- `aw`: away players without an answer to the open question (player_away): the question waits for the
-- other np - aw only.
local SUBMIT_FIELDS = { 'state', 'cur', 'endsAt', 'paused', 'prem', 'np', 'qno', 'qstart', 'aw' }
local SCORE_FIELDS = { 'scur', 'qc', 'qbase', 'tlim', 's_bonus', 's_smult', 's_sthr', 's_pen' }

-- The open question as answer_submit's hot path reads it: one room field `qopen`,
-- "<gen>:<cur>:<qno>:<qstart>:<endsAt>" while the question runs, "<gen>:<cur>:<qno>:<qstart>:p<prem>"
-- while it is paused, absent when no question is open. It packs room fields that change only at question
-- transitions, so the hot path reads 4 fields instead of 9 and parses this one once per room and value
-- (answer_fast's cache). Those fields stay the truth (every other path reads them); this copy is
-- rewritten from them by every transition that changes them: show, pause, resume, extend, reveal, end.
-- <gen> is the room's `gen` when it was written (every transition bumps `gen` before calling this): the
-- hot path trusts the copy only while `gen` still has that value. A transition that does not rewrite it
-- (one made by a library older than v6, loaded for a while in the middle of a game) bumps `gen` too, so
-- the stale copy is never used: those answers take the checked path, which reads the real fields.
local function set_qopen(R)
  local r = hm(R.P, { 'state', 'gen', 'cur', 'qno', 'qstart', 'endsAt', 'paused', 'prem' })
  if r.state == 'ACTIVE' then
    redis.call('HSET', R.P, 'qopen', r.gen .. ':' .. r.cur .. ':' .. r.qno .. ':' .. r.qstart .. ':'
      .. (r.paused == '1' and 'p' .. r.prem or r.endsAt))
  else
    redis.call('HDEL', R.P, 'qopen')
  end
end

-- A value longer than Redis's default hash-max-listpack-value (64 bytes), stored in the room hash so it is
-- a real hash table: HMGET of a dozen fields of a ~40-field listpack costs a linear scan per field
-- (measured on Redis 7.0.15: that HMGET took 12 us as a listpack, 5 us as a hash table).
local HASHTABLE_PAD = '-----------------------------------------------------------------'
-- The pad's field in P:players: not a player id (':' is outside arg_id's characters), so no call that
-- names a player can name it; nothing walks that hash (players are listed from P:lb).
local PLAYERS_PAD = ':pad'
-- The room hash's field of a member, 'm:<playerId>' = their answerSecret, written with the player's
-- P:players field at the join and deleted with it at the removal: answer_fast reads it in the same HMGET
-- as the room's fields, so an answer costs no membership call of its own (it was P:secret's field before
-- v10: the same memory, one hash fewer). P:players stays the membership's truth for every other path. A
-- player who joined under a library older than v10 has their secret in P:secret instead (member_secret),
-- and their answers take the checked path: correct, not cheaper.
local MEMBER_PREFIX = 'm:'

-- A member's answerSecret (nil for a non-member).
local function member_secret(R, pid)
  return redis.call('HGET', R.P, MEMBER_PREFIX .. pid) or redis.call('HGET', R.P .. ':secret', pid) or nil
end

-- ───────────────────────────── question payloads ─────────────────────────────

-- The data of game:question:show for question q (never includes the correct index). showAt: when it is
-- shown (the `qstart` of the room; nil in rooms older than fair start).
local function show_json(R, q, endsAt, tlim, points, nq, showAt)
  local i = int(q)
  local z = hm(R.Q, { 't' .. i, 'o' .. i, 'img' .. i })
  local m = {
    kv('qIndex', i), kv('totalQuestions', nq), kv('question', z['t' .. i]), kv('answers', z['o' .. i]),
    kv('endsAt', int(endsAt)), kv('timeLimitMs', int(tlim)), kv('points', points),
  }
  local img = z['img' .. i]
  if img and img ~= '' then m[#m + 1] = kv('imageUrl', img) end
  if tonumber(showAt) then m[#m + 1] = kv('showAt', int(tonumber(showAt))) end
  return obj(m)
end

-- Top N of the leaderboard as RankEntry JSON; delta = points of question q, streak as of q.
-- Ties share the better rank (1 + number of strictly higher totals).
local function top_json(R, q)
  local rows = redis.call('ZREVRANGE', R.P .. ':lb', 0, TOP_N - 1, 'WITHSCORES')
  if #rows == 0 then return '[]' end
  local ids = {}
  for k = 1, #rows, 2 do ids[#ids + 1] = rows[k] end
  local names = redis.call('HMGET', R.P .. ':players', unpack(ids))
  local deltas
  if q >= 0 then
    local fields = {}
    for k, id in ipairs(ids) do fields[k] = 'a:' .. id end
    deltas = redis.call('HMGET', qkey(R, q), unpack(fields))
  end
  local out, rank, prev = {}, 0, nil
  for k, id in ipairs(ids) do
    local score = tonumber(rows[2 * k])
    if score ~= prev then rank = k; prev = score end
    local _, name = split_player(names[k] or '0:?')
    local delta = 0
    if deltas and deltas[k] then
      local _, _, pts = split_answer(deltas[k])
      delta = pts or 0
    end
    out[#out + 1] = obj({ kv('rank', int(rank)), kv('id', js(id)), kv('name', js(name or '?')),
      kv('score', int(score)), kv('delta', int(delta)), kv('streak', int(deltas and streak_of(deltas[k]) or 0)) })
  end
  return arr(out)
end

-- The partition's index of live rooms, `rooms:{pNN}` (sorted set: game code → created, epoch ms), for the
-- ops view (`rooms_list`). A room enters it when created and leaves it when it ends (finished or abandoned:
-- an abandoned lobby is ended too), so it holds LOBBY..REVEAL rooms. Same hash tag as the room's keys.
local function live_add(R, now)
  redis.call('ZADD', 'rooms:' .. R.tag, int(now), R.code)
end

local function live_remove(R)
  redis.call('ZREM', 'rooms:' .. R.tag, R.code)
end

-- The QuestionReveal JSON of question q as its reveal published it (skipped is not kept: false).
local function reveal_json(R, q)
  local i = int(q)
  local z = hm(R.Q, { 'c' .. i, 'e' .. i, 'no' .. i })
  local nopt = tonumber(z['no' .. i]) or 0
  local fields = { 'n' }
  for k = 0, nopt - 1 do fields[#fields + 1] = 'd' .. int(k) end
  local counts = redis.call('HMGET', qkey(R, q), unpack(fields))
  local dist = {}
  for k = 2, #counts do dist[#dist + 1] = int(tonumber(counts[k]) or 0) end
  local np = tonumber(redis.call('HGET', R.P, 'np')) or 0
  local m = { kv('qIndex', i), kv('correctIndex', z['c' .. i]), kv('distribution', arr(dist)),
    kv('answeredCount', int(tonumber(counts[1]) or 0)), kv('totalCount', int(np)) }
  if z['e' .. i] and z['e' .. i] ~= '' then m[#m + 1] = kv('explanationText', z['e' .. i]) end
  m[#m + 1] = kv('skipped', 'false')
  return obj(m)
end

-- ───────────────────────────── transitions ─────────────────────────────

-- The interval of a room-wide broadcast that repeats while a room fills or a question runs: `base_ms`
-- up to `per_s` members, then whole multiples of it, so that one room sends at most about `per_s` of
-- these frames per second however big it is (a 100K lobby announces every 5 s, its progress every 4 s).
local function every_ms(base_ms, per_s, members)
  return base_ms * math.max(1, math.ceil((tonumber(members) or 0) / per_s))
end

-- The lead of a question's opening over its showAt after a countdown or reveal pause of `span` ms: half
-- the pause, at most SHOW_LEAD_MS (the reveal stays on screen at least as long); none for a pause under
-- SHOW_LEAD_MIN_SPAN.
local function show_lead(span)
  span = tonumber(span) or 0
  if span < SHOW_LEAD_MIN_SPAN then return 0 end
  return math.min(SHOW_LEAD_MS, math.floor(span / 2))
end

-- Opens question q: ACTIVE, deadline, schedules question_end and progress ticks. Fair start: it is shown
-- at showAt (>= now; the edges seal it until just before then), answers are accepted from showAt, and the
-- deadline and the time bonus run from it.
local function show_question(R, q, now, showAt)
  showAt = math.max(now, showAt or now)
  local i = int(q)
  local s = hm(R.P, { 's_tpq', 's_base', 'nq', 'naway' })
  local z = hm(R.Q, { 'l' .. i, 'p' .. i, 'c' .. i, 'no' .. i })
  local tlim = tonumber(z['l' .. i])
  if s.s_tpq and s.s_tpq ~= '' then tlim = tonumber(s.s_tpq) end
  local base = z['p' .. i]
  if s.s_base and s.s_base ~= '' then base = s.s_base end
  local endsAt = showAt + tlim
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  local pev = every_ms(PROGRESS_EVERY_MS, PROGRESS_FRAMES_PER_S, redis.call('HGET', R.P, 'np'))
  redis.call('HSET', R.P, 'state', 'ACTIVE', 'cur', i, 'endsAt', int(endsAt), 'qstart', int(showAt),
    'tlim', int(tlim), 'paused', '0', 'prem', '0', 'pslot', '0', 'pev', int(pev),
    'qc', z['c' .. i], 'qno', z['no' .. i], 'qbase', base, 'pgen', int(gen), 'aw', int(tonumber(s.naway) or 0))
  set_qopen(R)
  redis.call('DEL', qkey(R, q))
  -- a real hash table from the first answer (see HASHTABLE_PAD): a listpack would make every answer's
  -- HSETNX and counters, and the scoring's HMGET and HSET, a linear scan of up to 128 fields
  redis.call('HSET', qkey(R, q), 'n', 0, 'at', int(showAt), '_hashtable', HASHTABLE_PAD)
  emit(R, 'game:question:show', show_json(R, q, endsAt, tlim, base, s.nq, showAt))
  schedule(R, now, 'question_end', q, gen, endsAt + GRACE_MS)
  schedule(R, now, 'progress', q, gen, showAt + pev, pev)
  touch(R, ROOM_TTL, q)
end

-- The leaderboard after question q, kept for `results` of q once a later question is scored (RESULTS_KEEP
-- of them): `P:lb:<q>` is what `P:lb` was when question q+1 had been scored. `P:lb` is the live one.
local function lb_after(R, q)
  return R.P .. ':lb:' .. int(q)
end

-- A join or a leave while a question is being scored: also into the leaderboard being built (`P:lbn`, the
-- next `P:lb`), so that it holds exactly the room when scoring ends. cmd: 'ZADD' (a join, at 0) or 'ZREM'.
local function lb_scoring_also(R, cmd, pid)
  if redis.call('HEXISTS', R.P, 'sq') == 0 then return end
  if cmd == 'ZADD' then
    redis.call('ZADD', R.P .. ':lbn', 'NX', '0', pid)
  else
    redis.call('ZREM', R.P .. ':lbn', pid)
  end
end

-- One call's share of scoring question q: walks `P:lb` (the totals after question q-1, unchanged while
-- q is scored) with ZSCAN from the cursor `scur`, writes every visited player's new total into `P:lbn`
-- (the next `P:lb`) and each answer of q as "idx:ms:points:streak" (the streak from the player's record
-- of q-1). Stops after SCORE_STEP players. Idempotent per player
-- (ZSCAN may return one twice): a scored record is read back, never scored again, and the new total is
-- recomputed from the unchanged `P:lb`. Returns true when the walk is complete.
-- Per player this makes as few Lua strings as it can (Redis's Lua hashes every string it makes): numbers
-- go to redis.call as numbers, an unscored record is parsed with one pattern.
local function score_step(R, q)
  local sc, qc, base, tlim, maxb, smult, sthr, pen = unpack(redis.call('HMGET', R.P, unpack(SCORE_FIELDS)))
  -- the correct option as text, compared with each record's option as text (both written by int())
  qc, base, tlim, maxb = tonumber(qc) and int(tonumber(qc)), tonumber(base), tonumber(tlim), tonumber(maxb)
  smult, sthr, pen = tonumber(smult), tonumber(sthr), tonumber(pen)
  local lb, lbn, qk = R.P .. ':lb', R.P .. ':lbn', qkey(R, q)
  local prevk = q > 0 and qkey(R, q - 1)
  local cursor, done = sc or '0', 0
  repeat
    local res = redis.call('ZSCAN', lb, cursor, 'COUNT', SCORE_SCAN)
    cursor = res[1]
    local rows = res[2]
    local n = #rows / 2
    if n > 0 then
      local af = {}
      for k = 1, n do af[k] = 'a:' .. rows[2 * k - 1] end
      local recs = redis.call('HMGET', qk, unpack(af))
      -- unscored records "idx:ms:remainingMs", and the previous question's records of the right ones
      local idx, msv, remv, want, at = {}, {}, {}, {}, {}
      for k = 1, n do
        local v = recs[k]
        if v then
          local a, ms, rem = string.match(v, '^(%d+):(%d+):(%-?%d+)$')
          if a then
            idx[k], msv[k], remv[k] = a, ms, rem
            if a == qc and prevk then
              want[#want + 1] = af[k]
              at[#at + 1] = k
            end
          end
        end
      end
      local prev = {}
      if #want > 0 then
        local got = redis.call('HMGET', prevk, unpack(want))
        for j, k in ipairs(at) do prev[k] = got[j] end
      end
      local zadd, hset = { 'ZADD', lbn }, { 'HSET', qk }
      -- from the last row down: ZSCAN gives a small (listpack) leaderboard in ascending order, and a
      -- listpack ZADD walks from the head to the first higher score, so descending totals go in at the
      -- head (ascending ones made every insert a walk to the end: quadratic in the room's size)
      for k = n, 1, -1 do
        local pts = 0
        local a = idx[k]
        if a then
          local streak = 0
          if a == qc then
            local rem = tonumber(remv[k])
            local bonus = 0
            if rem > 0 then bonus = math.floor(maxb * rem / tlim) end
            if bonus > maxb then bonus = maxb end
            streak = 1
            if prev[k] then streak = streak_of(prev[k]) + 1 end
            local mult = 1
            if streak >= sthr then mult = smult end
            pts = math.floor((base + bonus) * mult)
          else
            pts = -pen
          end
          hset[#hset + 1] = af[k]
          hset[#hset + 1] = a .. ':' .. msv[k] .. ':' .. int_text(pts) .. ':' .. int_text(streak)
        elseif recs[k] then
          -- already scored (a second visit) or NO_ANSWER
          local _, _, p = split_answer(recs[k])
          pts = p or 0
        end
        -- the total as text: unchanged, ZSCAN's own; else '%d' (a Lua number argument would be
        -- formatted by Redis with %.17g)
        if pts == 0 then
          zadd[#zadd + 1] = rows[2 * k]
        else
          zadd[#zadd + 1] = int(tonumber(rows[2 * k]) + pts)
        end
        zadd[#zadd + 1] = rows[2 * k - 1]
      end
      redis.call(unpack(zadd))
      if #hset > 2 then redis.call(unpack(hset)) end
      done = done + n
    end
  until cursor == '0' or done >= SCORE_STEP
  if cursor ~= '0' then redis.call('HSET', R.P, 'scur', cursor) end
  return cursor == '0'
end

-- Question q is scored: `P:lbn` becomes `P:lb`, the old `P:lb` the kept leaderboard after q-1 (that of
-- q-1-RESULTS_KEEP is freed in the background); publishes the top-N leaderboard and schedules the next
-- question (revealPauseMs after the reveal).
local function finish_scoring(R, q, gen, now)
  local lb, lbn = R.P .. ':lb', R.P .. ':lbn'
  if q > 0 and redis.call('EXISTS', lb) == 1 then
    -- the totals after q-1, kept for `results` of q-1 (the key takes P:lb's expiry along)
    redis.call('UNLINK', lb_after(R, q - 1))
    redis.call('RENAME', lb, lb_after(R, q - 1))
  else
    redis.call('UNLINK', lb)
  end
  if redis.call('EXISTS', lbn) == 1 then redis.call('RENAME', lbn, lb) end
  if q - 1 - RESULTS_KEEP >= 0 then redis.call('UNLINK', lb_after(R, q - 1 - RESULTS_KEEP)) end
  redis.call('HDEL', R.P, 'sq', 'scur')
  redis.call('HSET', R.P, 'lsq', int(q))
  local r = hm(R.P, { 'np', 'revAt', 's_rp' })
  local top = top_json(R, q)
  redis.call('HSET', R.P, 'lbj', top)
  emit(R, 'game:leaderboard', obj({ kv('qIndex', int(q)), kv('rankings', top),
    kv('totalPlayers', int(tonumber(r.np) or 0)) }))
  schedule(R, now, 'next_question', q + 1, gen, tonumber(r.revAt) + tonumber(r.s_rp) - show_lead(r.s_rp))
  touch(R, ROOM_TTL, q)
end

-- Closes the current question: publishes the reveal (the distribution is counted as answers come in),
-- then scores the answers (score_step): a room of up to SCORE_STEP players in this call, which then
-- publishes the top-N leaderboard and schedules the next question (finish_scoring); a bigger room
-- continues in `score` timer fires (the engine fires the entry again at once while the reply says
-- why "more"), so no call holds Redis for more than a few ms.
-- defer: score nothing in this call, all of it in `score` fires. The early reveal does so: the answer
-- (or leave, or away report) that completed the room is acknowledged without waiting for the room's
-- scoring, and the answers of other rooms queued behind that call do not wait for it either (rooms that
-- started together complete together: 500 rooms' scoring in their last answers' calls held those
-- answers' acks for up to ~0.9 s, perf/edge.md).
local function reveal(R, now, skipped, defer)
  local r = hm(R.P, { 'cur', 's_rp' })
  local q = tonumber(r.cur)
  local i = int(q)
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  redis.call('HSET', R.P, 'state', 'REVEAL', 'revAt', int(now), 'paused', '0', 'sq', i, 'scur', '0')
  set_qopen(R)
  local z = hm(R.Q, { 'c' .. i, 'e' .. i, 'no' .. i })
  local nopt = tonumber(z['no' .. i])
  local fields = { 'n' }
  for k = 0, nopt - 1 do fields[#fields + 1] = 'd' .. int(k) end
  local counts = redis.call('HMGET', qkey(R, q), unpack(fields))
  local dist = {}
  for k = 2, #counts do dist[#dist + 1] = int(tonumber(counts[k]) or 0) end
  local np = tonumber(redis.call('HGET', R.P, 'np')) or 0
  local m = { kv('qIndex', i), kv('correctIndex', z['c' .. i]), kv('distribution', arr(dist)),
    kv('answeredCount', int(tonumber(counts[1]) or 0)), kv('totalCount', int(np)) }
  if z['e' .. i] and z['e' .. i] ~= '' then m[#m + 1] = kv('explanationText', z['e' .. i]) end
  m[#m + 1] = kv('skipped', jbool(skipped))
  emit(R, 'game:question:reveal', obj(m))
  -- the room's size at the reveal: `results` answers totalPlayers with it
  redis.call('HSET', qkey(R, q), 'np', int(np))
  redis.call('UNLINK', R.P .. ':lbn')
  if not defer and score_step(R, q) then
    finish_scoring(R, q, gen, now)
  else
    schedule(R, now, 'score', q, gen, now)
    touch(R, ROOM_TTL, q)
  end
end

-- Ends the game: final top N, short expiry for the reconnect window, a cleanup schedule, and an entry in
-- the partition's results stream `results:{pNN}` for the control plane's results writer.
-- reason: 'finished' (the last question was revealed) or 'abandoned' (the room was about to expire).
local function end_game(R, now, reason)
  local r = hm(R.P, { 'cur', 'rid' })
  local q = tonumber(r.cur)
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  redis.call('HSET', R.P, 'state', 'ENDED', 'ended', int(now), 'endReason', reason)
  set_qopen(R)
  local np = tonumber(redis.call('HGET', R.P, 'np')) or 0
  emit(R, 'game:end', obj({ kv('roomId', js(r.rid)), kv('finalRankings', top_json(R, q)),
    kv('totalPlayers', int(np)) }))
  touch(R, END_TTL, -1)
  for k = 0, q do
    redis.call('EXPIRE', qkey(R, k), END_TTL)
    redis.call('EXPIRE', lb_after(R, k), END_TTL)
  end
  schedule(R, now, 'cleanup', q, gen, now + END_TTL * 1000)
  redis.call('XADD', 'results:' .. R.tag, 'MINID', '~', int(now - TIMER_KEEP_MS * 24), '*',
    'room', R.code, 'roomId', r.rid, 'reason', reason, 'ended', int(now))
  live_remove(R)
end

-- The room:player:presence of the pending presence changes (P:presq): each player once, in their latest
-- state (away or back), newest first; awayCount and totalCount as they are now.
local function presence_json(R)
  local pend = redis.call('LRANGE', R.P .. ':presq', 0, JOIN_NAMES - 1)
  redis.call('DEL', R.P .. ':presq')
  local away, back, seen = {}, {}, {}
  for _, v in ipairs(pend) do
    local k, pid = string.sub(v, 1, 1), string.sub(v, 3)
    if not seen[pid] then
      seen[pid] = true
      if k == 'a' then away[#away + 1] = js(pid) else back[#back + 1] = js(pid) end
    end
  end
  local r = hm(R.P, { 'naway', 'np' })
  return obj({ kv('away', arr(away)), kv('back', arr(back)), kv('awayCount', int(tonumber(r.naway) or 0)),
    kv('totalCount', int(tonumber(r.np) or 0)) })
end

-- Announces the pending joiners (coalesced room:player:joined) and the pending presence changes
-- (coalesced room:player:presence, same cadence), and invalidates any scheduled flush.
local function flush_joins(R, now)
  local f = hm(R.P, { 'pjn', 'ppn' })
  local pjn, ppn = tonumber(f.pjn) or 0, tonumber(f.ppn) or 0
  if pjn <= 0 and ppn <= 0 then return false end
  redis.call('HINCRBY', R.P, 'fgen', 1)
  redis.call('HSET', R.P, 'pjn', 0, 'ppn', 0, 'lflush', int(now), 'pflush', 0)
  if pjn > 0 then
    -- PlayerInfo JSON of current players (leavers are removed from the list), newest first
    local pend = redis.call('LRANGE', R.P .. ':pend', 0, JOIN_NAMES - 1)
    local items = {}
    for k = #pend, 1, -1 do items[#items + 1] = pend[k] end -- oldest first, newest last
    local np = tonumber(redis.call('HGET', R.P, 'np')) or 0
    redis.call('DEL', R.P .. ':pend')
    emit(R, 'room:player:joined', obj({ kv('players', arr(items)), kv('joinedCount', int(pjn)),
      kv('totalCount', int(np)) }))
  end
  if ppn > 0 then emit(R, 'room:player:presence', presence_json(R)) end
  return true
end

-- Joins and presence changes are announced coalesced: now, when the room's last announcement (lflush) is
-- older than the room's cadence, else once by a lobby_flush schedule (pflush: one is pending).
local function announce_or_schedule(R, now, lflush, pflush, np)
  local last = tonumber(lflush) or 0
  local every = every_ms(JOIN_EVERY_MS, JOIN_FRAMES_PER_S, np)
  if now - last >= every then
    flush_joins(R, now)
  elseif pflush ~= '1' then
    local fgen = redis.call('HINCRBY', R.P, 'fgen', 1)
    redis.call('HSET', R.P, 'pflush', 1)
    schedule(R, now, 'lobby_flush', 0, fgen, last + every)
  end
end

-- A room key made after the room's last `touch` (P:conn, P:presq: a report in the lobby, a reconnect after the
-- game ended) gets the room hash's expiry, so it never outlives the room.
local function expire_with_room(R, suffix)
  local k = R.P .. suffix
  if redis.call('PTTL', k) == -1 then
    local t = redis.call('PTTL', R.P)
    if t > 0 then redis.call('PEXPIRE', k, t) end
  end
end

-- Queues a presence change of pid ('a' away, 'b' back) for the coalesced room:player:presence: announced
-- now when the room's last announcement is old enough, else by the lobby_flush schedule (at most one
-- announcement per room per JOIN_EVERY_MS, scaled with the room's size as joins are).
local function note_presence(R, now, kind, pid)
  redis.call('LPUSH', R.P .. ':presq', kind .. ':' .. pid)
  redis.call('LTRIM', R.P .. ':presq', 0, JOIN_NAMES - 1)
  expire_with_room(R, ':presq')
  redis.call('HINCRBY', R.P, 'ppn', 1)
  local r = hm(R.P, { 'lflush', 'pflush', 'np' })
  announce_or_schedule(R, now, r.lflush, r.pflush, r.np)
end

-- Whether pid has a real answer to question q (NO_ANSWER is none).
local function has_answer(R, q, pid)
  local v = redis.call('HGET', qkey(R, q), 'a:' .. pid)
  return v ~= false and v ~= nil and v ~= NO_ANSWER
end

-- An answer just recorded for pid while the room counts `aw` > 0 away players without an answer: when pid
-- is one of them (the answer reached Redis after the edge reported the socket's close — the two travel
-- apart), pid now has an answer, so `aw` drops by one. Returns the room's `aw` after. Costs nothing while
-- nobody is away (the callers read `aw` with the room anyway).
local function answered_while_away(P, pid, aw)
  if aw > 0 and redis.call('HEXISTS', P .. ':conn', 'a:' .. pid) == 1 then
    redis.call('HINCRBY', P, 'aw', -1)
    return aw - 1
  end
  return aw
end

-- Presence bookkeeping of an away player pid who is no longer away (back, or removed): the room's away
-- count, and the open question's `aw` when they had not answered it.
local function unmark_away(R, pid)
  redis.call('HDEL', R.P .. ':conn', 'a:' .. pid)
  redis.call('HINCRBY', R.P, 'naway', -1)
  local r = hm(R.P, { 'state', 'cur' })
  if r.state == 'ACTIVE' and not has_answer(R, tonumber(r.cur), pid) then
    redis.call('HINCRBY', R.P, 'aw', -1)
  end
end

-- Reveals early when every connected player (every player who is not away: player_away) has answered the
-- open question: n answers >= np - aw (aw: away players without an answer). Not when nobody is connected
-- (everyone away): the question then runs its time, so that a room whose network blips does not race
-- through its questions.
local function maybe_early_reveal(R, now)
  local r = hm(R.P, { 'state', 'np', 'cur', 'naway', 'aw' })
  if r.state ~= 'ACTIVE' then return end
  local np = tonumber(r.np) or 0
  local n = tonumber(redis.call('HGET', qkey(R, tonumber(r.cur)), 'n')) or 0
  if np - (tonumber(r.naway) or 0) > 0 and n >= np - (tonumber(r.aw) or 0) then reveal(R, now, false, true) end
end

-- Removes a player (leave, host kick, anti-cheat kick) and publishes room:player:left.
-- reason: 'leave' | 'kick'; kicked_by: nil, 'host' or 'cheat' (then the session is barred).
local function remove_player(R, pid, reason, kicked_by, now)
  local pj = player_json(pid, redis.call('HGET', R.P .. ':players', pid) or '0:')
  local nk = redis.call('HGET', R.P .. ':names', 'p:' .. pid)
  if nk then redis.call('HDEL', R.P .. ':names', 'k:' .. nk, 'p:' .. pid) end
  if kicked_by then
    local sess = redis.call('HGET', R.P .. ':sess', pid)
    redis.call('HSET', R.P .. ':kicked', 'p:' .. pid, kicked_by)
    if sess then redis.call('HSET', R.P .. ':kicked', 's:' .. sess, pid) end
    -- the name stays barred too: a new socket under the same name is refused (case-folded)
    if nk then redis.call('HSET', R.P .. ':kicked', 'n:' .. nk, pid) end
  end
  redis.call('HDEL', R.P .. ':players', pid)
  redis.call('HDEL', R.P, MEMBER_PREFIX .. pid)
  redis.call('HDEL', R.P .. ':sess', pid)
  redis.call('HDEL', R.P .. ':secret', pid) -- joined before v10
  redis.call('HDEL', R.P .. ':viol', pid)
  if redis.call('HEXISTS', R.P .. ':conn', 'a:' .. pid) == 1 then unmark_away(R, pid) end
  redis.call('HDEL', R.P .. ':conn', 'e:' .. pid)
  redis.call('ZREM', R.P .. ':lb', pid)
  lb_scoring_also(R, 'ZREM', pid)
  redis.call('LREM', R.P .. ':recent', 0, pj)
  redis.call('LREM', R.P .. ':pend', 0, pj)
  local np = redis.call('HINCRBY', R.P, 'np', -1)
  emit(R, 'room:player:left', obj({ kv('playerId', js(pid)), kv('reason', js(reason)),
    kv('totalCount', int(np)) }))
  if kicked_by then touch(R, ROOM_TTL, -1) end
  maybe_early_reveal(R, now)
end

-- A player's status for actions that need a current member: errors with kicked / unauthorized.
local function require_player(R, pid)
  if redis.call('HEXISTS', R.P .. ':players', pid) == 1 then return end
  if redis.call('HEXISTS', R.P .. ':kicked', 'p:' .. pid) == 1 then
    fail('kicked', 'this player was removed from the room')
  end
  fail('unauthorized', 'not a player of this room')
end

-- ───────────────────────────── create / join / leave ─────────────────────────────

local function opt(t, k)
  local v = t[k]
  if v == nil or v == cjson.null then return nil end
  return v
end

local function setting(s, k, lo, hi, default, integer)
  local v = opt(s, k)
  if v == nil then return default end
  if type(v) ~= 'number' or v < lo or v > hi or (integer and v ~= math.floor(v)) then
    fail('bad_payload', 'settings.' .. k .. ' must be ' .. (integer and 'an integer ' or 'a number ') ..
      tostring(lo) .. '..' .. tostring(hi))
  end
  return v
end

-- room_create
-- KEYS: room, timers
-- ARGV: gameCode (must match KEYS[1]), roomId, hostToken, quizJson (the stored quiz), settingsJson
--       (RoomSettings), hostName (may be ""), shareUrl (may be "")
-- Reply: RoomCreated JSON. Errors: code_taken (live room with this code: retry with another), bad_payload.
local function room_create(keys, args)
  local R = room_of(keys, true)
  if args[1] ~= R.code then fail('bad_payload', 'gameCode does not match KEYS[1]') end
  local rid = arg_id(args[2], 'roomId', 1, 64)
  local host = arg_id(args[3], 'hostToken', 16, 128)
  local okq, quiz = pcall(cjson.decode, args[4] or '')
  if not okq or type(quiz) ~= 'table' then fail('bad_payload', 'quiz is not a JSON object') end
  local oks, s = pcall(cjson.decode, (args[5] and args[5] ~= '') and args[5] or '{}')
  if not oks or type(s) ~= 'table' then fail('bad_payload', 'settings is not a JSON object') end
  local hname = args[6] or ''
  if hname ~= '' then hname = check_name(hname) end
  local share = args[7] or ''
  if #share > 512 then fail('bad_payload', 'shareUrl too long') end

  -- validate the quiz (the Rust importer validated it too; never trust a copy)
  local qid, title, qs = opt(quiz, 'id'), opt(quiz, 'title'), opt(quiz, 'questions')
  if type(qid) ~= 'string' or not string.find(qid, '^[%w_%-]+$') or #qid > 64 then
    fail('bad_payload', 'quiz.id must be 1..64 characters of [A-Za-z0-9_-]')
  end
  if type(title) ~= 'string' or title == '' then fail('bad_payload', 'quiz.title must be a non-empty string') end
  if type(qs) ~= 'table' or #qs < 1 or #qs > MAX_QUESTIONS then
    fail('bad_payload', 'quiz.questions must have 1..' .. MAX_QUESTIONS .. ' entries')
  end
  local qfields = {}
  for k, q in ipairs(qs) do
    local at = 'quiz.questions[' .. int(k - 1) .. ']'
    if type(q) ~= 'table' then fail('bad_payload', at .. ' must be an object') end
    local text, options, correct = opt(q, 'text'), opt(q, 'options'), opt(q, 'correct')
    local tl, pts = opt(q, 'timeLimitMs') or 20000, opt(q, 'points') or 1000
    local expl, img = opt(q, 'explanation'), opt(q, 'imageUrl')
    if type(text) ~= 'string' or text == '' then fail('bad_payload', at .. '.text must be a non-empty string') end
    if type(options) ~= 'table' or #options < 2 or #options > MAX_OPTIONS then
      fail('bad_payload', at .. '.options must have 2..8 entries')
    end
    local enc = {}
    for j, o in ipairs(options) do
      if type(o) ~= 'string' or o == '' then fail('bad_payload', at .. '.options must be non-empty strings') end
      enc[j] = js(o)
    end
    if type(correct) ~= 'number' or correct ~= math.floor(correct) or correct < 0 or correct >= #options then
      fail('bad_payload', at .. '.correct must index options')
    end
    if type(tl) ~= 'number' or tl ~= math.floor(tl) or tl < 1000 or tl > 300000 then
      fail('bad_payload', at .. '.timeLimitMs must be an integer 1000..300000')
    end
    if type(pts) ~= 'number' or pts ~= math.floor(pts) or pts < 0 or pts > 100000 then
      fail('bad_payload', at .. '.points must be an integer 0..100000')
    end
    if expl ~= nil and type(expl) ~= 'string' then fail('bad_payload', at .. '.explanation must be a string') end
    if img ~= nil and type(img) ~= 'string' then fail('bad_payload', at .. '.imageUrl must be a string') end
    local i = int(k - 1)
    for _, f in ipairs({ 't' .. i, js(text), 'o' .. i, arr(enc), 'no' .. i, int(#options), 'c' .. i, int(correct),
      'e' .. i, (expl and expl ~= '') and js(expl) or '', 'l' .. i, int(tl), 'p' .. i, int(pts),
      'img' .. i, (img and img ~= '') and js(img) or '' }) do
      qfields[#qfields + 1] = f
    end
  end

  -- settings (RoomSettings), with defaults
  local tpq = setting(s, 'timePerQMs', 1000, 300000, nil, true)
  local maxp = setting(s, 'maxPlayers', 1, 1000000, 100000, true)
  local late = opt(s, 'lateJoin')
  if late ~= nil and type(late) ~= 'boolean' then fail('bad_payload', 'settings.lateJoin must be a boolean') end
  local base = setting(s, 'basePoints', 0, 100000, nil, true)
  local bonus = setting(s, 'maxTimeBonus', 0, 100000, 500, true)
  local smult = setting(s, 'streakMultiplier', 1, 10, 1.5, false)
  local sthr = setting(s, 'streakThreshold', 1, 1000, 3, true)
  local pen = setting(s, 'wrongPenalty', 0, 100000, 0, true)
  local cd = setting(s, 'countdownMs', 0, 60000, 3000, true)
  local rp = setting(s, 'revealPauseMs', 0, 600000, 5000, true)

  if redis.call('EXISTS', R.P) == 1 then fail('code_taken', 'a live room already uses ' .. R.code) end

  -- writes
  local now = now_ms()
  -- leftovers of an expired room with this code (normally none)
  for _, suffix in ipairs(FIXED) do redis.call('DEL', R.P .. suffix) end
  redis.call('HSET', R.Q, 'id', qid, 'title', title, 'n', int(#qs), unpack(qfields))
  redis.call('HSET', R.P, 'state', 'LOBBY', 'code', R.code, 'rid', rid, 'host', host, 'hname', hname,
    'quizId', qid, 'title', title, 'nq', int(#qs), 'cur', -1, 'seq', 0, 'gen', 0, 'fgen', 0, 'np', 0,
    'pjn', 0, 'lflush', 0, 'pflush', 0, 'created', int(now), 'paused', 0, 'prem', 0, 'lbj', '[]',
    's_tpq', tpq and int(tpq) or '', 's_maxp', int(maxp), 's_late', late and '1' or '0',
    's_base', base and int(base) or '', 's_bonus', int(bonus), 's_smult', tostring(smult),
    's_sthr', int(sthr), 's_pen', int(pen), 's_cd', int(cd), 's_rp', int(rp), '_hashtable', HASHTABLE_PAD)
  -- the players hash a real hash table too: the checked path's membership check reads it
  redis.call('HSET', R.P .. ':players', PLAYERS_PAD, HASHTABLE_PAD)
  touch(R, ROOM_TTL, -1)
  schedule(R, now, 'abandon', 0, 0, now + ABANDON_CHECK_MS)
  live_add(R, now)
  return obj({ kv('gameCode', js(R.code)), kv('roomId', js(rid)), kv('shareUrl', js(share)),
    kv('hostToken', js(host)), kv('quizMeta', obj({ kv('quizId', js(qid)), kv('title', js(title)),
      kv('questionCount', int(#qs)) })) })
end

local function quiz_meta(r)
  return obj({ kv('quizId', js(r.quizId)), kv('title', js(r.title)), kv('questionCount', r.nq) })
end

-- The RoomJoinAck of player pid: players, totalCount, state and seq as they are now.
local function join_ack(R, r, pid, sess, secret, np)
  -- the lobby snapshot is stored pre-encoded: no per-player work here (it was ~150 us per join)
  local items = redis.call('LRANGE', R.P .. ':recent', '0', '-1')
  local seq = redis.call('HGET', R.P, 'seq')
  -- One concatenation for the whole reply (~3 KB with 50 players): nested obj/kv/arr made five strings of
  -- that size, each copied and interned, and Lua 5.1 hashes a long string from 32 of its characters, so
  -- the acks of a burst of joins (same length, same sampled characters) share a bucket of the string
  -- table until the collector frees them: each new one walked that chain (callgrind, perf/lua.md).
  local parts = { '{"playerId":', js(pid), ',"gameCode":', js(R.code), ',"sessionToken":', js(sess),
    ',"answerSecret":', js(secret), ',"players":[' }
  local n = #parts
  for i = 1, #items do
    if i > 1 then parts[n + 1], n = ',', n + 1 end
    parts[n + 1], n = items[i], n + 1
  end
  parts[n + 1] = '],"totalCount":' .. int(np) .. ',"quizMeta":' .. quiz_meta(r) .. ',"state":' .. js(r.state)
    .. ',"seq":' .. seq .. '}'
  return table.concat(parts)
end

-- room_join
-- KEYS: room, timers
-- ARGV: playerId, sessionToken, answerSecret (caller's CSPRNG), name, nameKey (the name case-folded by
--       the caller, Unicode lower case; compared for name_taken), avatar (0..65535), priorSession (a
--       sessionToken this socket held in the room before, or "")
-- Reply: RoomJoinAck JSON. Errors: room_not_found, kicked, room_locked, room_full, name_taken, bad_name,
--        bad_payload. Joins are announced coalesced: at most one room:player:joined per second per room.
-- Idempotent: a retry of a join that already succeeded (playerId present in the room, its stored
--        sessionToken equal to the given one, nameKey mapping to that playerId) writes nothing, announces
--        nothing and returns the RoomJoinAck again (the stored answerSecret; players, totalCount, state and
--        seq as they are now), whatever the room's state or fill. The edge reuses a socket's ids when it
--        retries, so a join whose reply was lost (`unavailable`) is safe to repeat. Any mismatch gets the
--        usual errors (name_taken, or bad_payload for a reused playerId; kicked if that session was kicked).
local function room_join(keys, args)
  local R = room_of(keys, true)
  local pid = arg_id(args[1], 'playerId', 1, 64)
  if pid == 'host' then fail('bad_payload', 'playerId "host" is reserved') end
  local sess = arg_id(args[2], 'sessionToken', 16, 128)
  local secret = arg_id(args[3], 'answerSecret', 16, 128)
  local name = check_name(args[4])
  local nkey = args[5]
  if type(nkey) ~= 'string' or nkey == '' then nkey = name end
  nkey = string.lower(string.match(nkey, '^ *(.-) *$'))
  if nkey == '' or #nkey > 200 then fail('bad_name', 'bad name key') end
  local avatar = arg_int(args[6] or '0', 'avatar', 0, 65535)
  local prior = args[7] or ''
  local r = hm(R.P, { 'state', 'np', 's_maxp', 's_late', 'quizId', 'title', 'nq', 'lflush', 'pflush' })
  require_room(r)
  if prior ~= '' and redis.call('HEXISTS', R.P .. ':kicked', 's:' .. prior) == 1 then
    fail('kicked', 'this session was removed from the room')
  end
  -- a retry of this very join (same playerId, sessionToken and name): the same ack, nothing written;
  -- a retry after this session was kicked: kicked
  local held = redis.call('HGET', R.P .. ':sess', pid)
  if held == sess and redis.call('HGET', R.P .. ':names', 'k:' .. nkey) == pid then
    return join_ack(R, r, pid, sess, member_secret(R, pid), tonumber(r.np))
  end
  if not held and redis.call('HGET', R.P .. ':kicked', 's:' .. sess) == pid then
    fail('kicked', 'this session was removed from the room')
  end
  if redis.call('HEXISTS', R.P .. ':kicked', 'n:' .. nkey) == 1 then
    fail('kicked', 'a player of this name was removed from the room')
  end
  if r.state ~= 'LOBBY' and (r.state == 'ENDED' or r.s_late ~= '1') then
    fail('room_locked', 'the game has started')
  end
  if tonumber(r.np) >= tonumber(r.s_maxp) then fail('room_full', 'the room is full') end
  if redis.call('HEXISTS', R.P .. ':names', 'k:' .. nkey) == 1 then fail('name_taken', 'nickname in use') end
  if redis.call('HEXISTS', R.P .. ':players', pid) == 1 or
      redis.call('HEXISTS', R.P .. ':kicked', 'p:' .. pid) == 1 then
    fail('bad_payload', 'playerId already used in this room')
  end

  -- writes
  local now = now_ms()
  local pv = int(avatar) .. ':' .. name
  local pj = player_json(pid, pv)
  redis.call('HSET', R.P .. ':players', pid, pv)
  redis.call('HSET', R.P, MEMBER_PREFIX .. pid, secret)
  redis.call('HSET', R.P .. ':names', 'k:' .. nkey, pid, 'p:' .. pid, nkey)
  redis.call('HSET', R.P .. ':sess', pid, sess)
  -- numbers go as texts: a Lua number argument is formatted by Redis with %.17g (~1,900 instructions)
  redis.call('ZADD', R.P .. ':lb', 'NX', '0', pid)
  lb_scoring_also(R, 'ZADD', pid)
  redis.call('RPUSH', R.P .. ':recent', pj)
  redis.call('LTRIM', R.P .. ':recent', RECENT_FROM, '-1')
  local np = redis.call('HINCRBY', R.P, 'np', '1')
  redis.call('LPUSH', R.P .. ':pend', pj)
  redis.call('LTRIM', R.P .. ':pend', '0', JOIN_NAMES_LAST)
  redis.call('HINCRBY', R.P, 'pjn', '1')
  if np == 1 then touch(R, ROOM_TTL, -1) end
  announce_or_schedule(R, now, r.lflush, r.pflush, np)

  return join_ack(R, r, pid, sess, secret, np)
end

-- room_leave
-- KEYS: room, timers
-- ARGV: playerId
-- Reply: OkReply {"event":"room:leave"}. Publishes room:player:left {reason:"leave"}. After game:end it
--        changes nothing. Errors: room_not_found, kicked, unauthorized.
local function room_leave(keys, args)
  local R = room_of(keys, true)
  local pid = arg_id(args[1], 'playerId', 1, 64)
  local r = hm(R.P, { 'state' })
  require_room(r)
  require_player(R, pid)
  if r.state ~= 'ENDED' then remove_player(R, pid, 'leave', nil, now_ms()) end
  return ok_reply('room:leave')
end

-- room_kick
-- KEYS: room, timers
-- ARGV: hostToken, targetPlayerId
-- Reply: OkReply {"event":"room:kick"}. The player is removed, room:player:left {reason:"kick"} is
--        published, and the player's id and session are barred (join/reconnect/answer get `kicked`).
--        Errors: room_not_found, not_host, wrong_state (after the end), bad_payload (no such player).
local function room_kick(keys, args)
  local R = room_of(keys, true)
  local r = hm(R.P, { 'state', 'host' })
  require_room(r)
  require_host(r, args[1])
  local pid = arg_id(args[2], 'targetPlayerId', 1, 64)
  if r.state == 'ENDED' then fail('wrong_state', 'the game is over') end
  if redis.call('HEXISTS', R.P .. ':players', pid) == 0 then fail('bad_payload', 'no such player') end
  remove_player(R, pid, 'kick', 'host', now_ms())
  return ok_reply('room:kick')
end

-- ───────────────────────────── game flow ─────────────────────────────

-- game_start
-- KEYS: room, timers
-- ARGV: hostToken
-- Reply: OkReply {"event":"game:start"}. LOBBY -> STARTING, announces pending joiners (room:player:joined),
--        publishes game:countdown {startsAt,count}, schedules countdown_end at startsAt. Errors:
--        room_not_found, not_host, wrong_state.
local function game_start(keys, args)
  local R = room_of(keys, true)
  local r = hm(R.P, { 'state', 'host', 's_cd' })
  require_room(r)
  require_host(r, args[1])
  if r.state ~= 'LOBBY' then fail('wrong_state', 'the game has already started') end
  local now = now_ms()
  local cd = tonumber(r.s_cd)
  local startsAt = now + cd
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  -- Joiners not yet announced are announced now, before the countdown: a scheduled flush (up to 5 s
  -- away in a big room) would otherwise send a frame to every member just as the first question goes out.
  flush_joins(R, now)
  redis.call('HSET', R.P, 'state', 'STARTING', 'startsAt', int(startsAt))
  emit(R, 'game:countdown', obj({ kv('startsAt', int(startsAt)), kv('count', int(math.ceil(cd / 1000))) }))
  schedule(R, now, 'countdown_end', 0, gen, startsAt - show_lead(cd))
  touch(R, ROOM_TTL, -1)
  return ok_reply('game:start')
end

-- Counts a refused answer event of the open question, and an anti-cheat violation when it is over the
-- per-question limit; kicks at VIOLATIONS_KICK. These writes are the point of the refusal, so they happen
-- before the error reply (nothing else is written on a refused answer). A player refused ANSWER_EVENTS
-- times without an answer gets a:<pid> = NO_ANSWER, so the HSETNX of answer_submit's fast path fails for
-- them and the refusal path (rate_limited) decides.
local function refuse_answer(qk, pid, code, detail)
  local r = redis.call('HINCRBY', qk, 'r:' .. pid, 1)
  if r >= ANSWER_EVENTS then redis.call('HSETNX', qk, 'a:' .. pid, NO_ANSWER) end
  fail(code, detail)
end

-- Every answer that the fast path of answer_submit did not store: the checks in their documented order
-- (layers 5, 6, 4, 3 and the option range), each with its error and its counted refusal.
-- A resend of the answer recorded for question qi (same option) is already_answered, whatever happened
-- since: the question may have closed (everyone answered while this player was still resending after
-- `unavailable` — the edge acks only once a replica has the answer) or the next one opened. Not
-- late_answer or wrong_question (the answer stands and counts) and not an answer event; it still writes
-- (x:<pid>), so that the edge's WAIT after it covers the recorded answer too.
local function refuse_resend(R, pid, qi, ai)
  local qk = qkey(R, qi)
  local rec = redis.call('HGET', qk, 'a:' .. pid)
  if rec and rec ~= NO_ANSWER and tonumber(string.match(rec, '^(%d+):')) == ai then
    redis.call('HINCRBY', qk, 'x:' .. pid, 1)
    fail('already_answered', 'the first answer stands')
  end
end

local function answer_refused(R, pid, qi, ai, state, cur, endsAt, paused, qno, qstart)
  require_player(R, pid)
  if cur and (qi < cur or (qi == cur and state ~= 'ACTIVE')) then refuse_resend(R, pid, qi, ai) end
  if state ~= 'ACTIVE' then
    if (state == 'REVEAL' or state == 'ENDED') and qi == cur then fail('late_answer', 'the question is closed') end
    if qi ~= cur then fail('wrong_question', 'question ' .. int(qi) .. ' is not open') end
    fail('wrong_state', 'no question is open')
  end
  local now = now_ms()
  -- fair start: not before the question is on screen (not counted: nothing of the question was known)
  if qi == cur and now < qstart then fail('too_early', 'question ' .. int(cur) .. ' shows at ' .. int(qstart)) end
  local qk = qkey(R, cur)
  -- layer 5: at most ANSWER_EVENTS answer events per player per question
  local seen = redis.call('HMGET', qk, 'a:' .. pid, 'r:' .. pid)
  local answered = seen[1] and seen[1] ~= NO_ANSWER
  -- a resend of the recorded answer (same question and option, after `unavailable`: the edge acks only
  -- once a replica has the answer) is not another answer event; it still writes (x:<pid>), so that the
  -- edge's WAIT after it covers the recorded answer too
  if answered and qi == cur and tonumber(string.match(seen[1], '^(%d+):')) == ai then
    redis.call('HINCRBY', qk, 'x:' .. pid, 1)
    fail('already_answered', 'the first answer stands')
  end
  local events = (answered and 1 or 0) + (tonumber(seen[2]) or 0)
  if events >= ANSWER_EVENTS then
    local r = redis.call('HINCRBY', qk, 'r:' .. pid, 1)
    if not answered and r >= ANSWER_EVENTS then redis.call('HSETNX', qk, 'a:' .. pid, NO_ANSWER) end
    local v = redis.call('HINCRBY', R.P .. ':viol', pid, 1)
    if v >= VIOLATIONS_KICK then
      remove_player(R, pid, 'kick', 'cheat', now)
      fail('kicked', 'removed after ' .. int(v) .. ' violations')
    end
    touch(R, ROOM_TTL, cur)
    fail('rate_limited', 'at most ' .. ANSWER_EVENTS .. ' answer events per question (violation ' .. int(v) .. ')')
  end
  -- layer 6: the current question only
  if qi ~= cur then refuse_answer(qk, pid, 'wrong_question', 'question ' .. int(qi) .. ' is not open') end
  -- layer 4: one answer
  if answered then refuse_answer(qk, pid, 'already_answered', 'the first answer stands') end
  -- layer 3: server time, grace after the deadline (a paused question has no running deadline)
  if not paused and now > endsAt + GRACE_MS then
    refuse_answer(qk, pid, 'late_answer', 'answering closed at ' .. int(endsAt))
  end
  if ai >= qno then refuse_answer(qk, pid, 'bad_payload', 'answerIdx out of range') end
  -- all checks pass only when the answer was stored between the fast path's read and here: impossible
  -- inside one call, but never store without the lock
  refuse_answer(qk, pid, 'already_answered', 'the first answer stands')
end

-- answer_submit
-- KEYS: room, timers
-- ARGV: playerId, qIndex, answerIdx   (the edge has verified the answer HMAC with the session's secret)
-- Reply: AnswerAck {received:true, qIndex, serverTime} — nothing about correctness.
-- Errors: room_not_found, unauthorized, kicked, wrong_state, wrong_question, late_answer,
--         already_answered, rate_limited, bad_payload.
-- The hot path records the answer and nothing else: one HMGET of the room, TIME, the HSETNX lock of
-- a:<pid> = "idx:serverMs:remainingMs" (one answer per player per question), the membership check, and
-- the answered and per-option counters (the reveal publishes the distribution at once). Points and
-- streaks are computed at the reveal from the stored record (score_step). If every player has now answered, the question is revealed in this same
-- call. Anything else (not open, another question, late, out of range, a second answer, a non-member)
-- goes to answer_refused, which makes the checks in their documented order. answer_fast (registered as
-- `answer_submit`) runs the same path without the refusal machinery.
local function answer_submit(keys, args)
  local R = room_of(keys, true)
  local pid = arg_id(args[1], 'playerId', 1, 64)
  local qi = arg_int(args[2], 'qIndex', 0, 1000000)
  local ai = arg_int(args[3], 'answerIdx', 0, 1000000)
  -- one HMGET, unpacked by position (the hot path: building a keyed table costs ~2 us)
  local state, cur, endsAt, paused, prem, np, qno, qstart, aw =
    unpack(redis.call('HMGET', R.P, unpack(SUBMIT_FIELDS)))
  if not state then fail('room_not_found', 'no live room has this game code') end
  cur, endsAt, qno, paused = tonumber(cur), tonumber(endsAt), tonumber(qno), paused == '1'
  qstart = tonumber(qstart) or 0
  if state == 'ACTIVE' and qi == cur and ai < qno then
    local now = now_ms()
    if now >= qstart and (paused or now <= endsAt + GRACE_MS) then
      local qk = qkey(R, cur)
      local rem = paused and tonumber(prem) or (endsAt - now)
      local a = 'a:' .. pid
      if redis.call('HSETNX', qk, a, ai .. ':' .. int(now) .. ':' .. int(rem)) == 1 then
        if redis.call('HEXISTS', R.P .. ':players', pid) == 0 then
          redis.call('HDEL', qk, a)
          require_player(R, pid)
        end
        redis.call('HINCRBY', qk, 'd' .. ai, 1)
        aw = answered_while_away(R.P, pid, tonumber(aw) or 0)
        if redis.call('HINCRBY', qk, 'n', 1) >= (tonumber(np) or 0) - aw then maybe_early_reveal(R, now) end
        return '{"received":true,"qIndex":' .. cur .. ',"serverTime":' .. int(now) .. '}'
      end
    end
  end
  return answer_refused(R, pid, qi, ai, state, cur, endsAt, paused, qno, qstart)
end

-- The registered `answer_submit`: answer_submit's accepting path, with plain checks instead of fail()
-- and without the pcall of `api` (on the hot path every call and every string counts: Redis's Lua hashes
-- each string it makes). An answer it cannot accept as it stands, and any argument it does not find in
-- canonical form, goes to answer_submit (wrapped by `api`), which checks everything again and refuses with
-- the documented error.
local checked_answer, checked_reveal -- api(answer_submit), api(reveal of the room): set at registration
-- Per room key P (checked once): the room's derived key names, so the hot path builds no key strings.
-- A library-level cache (Redis keeps the library's Lua state between calls), emptied past ROOM_CACHE_MAX.
local ROOM_CACHE_MAX = 20000
local room_cache, room_cache_n = {}, 0
local function room_keys(P, T)
  local c = room_cache[P]
  if c then
    if c.T == T then return c end
    return nil
  end
  local tag = string.match(P, '^room:({p%d%d+}):[A-Z0-9]+$')
  if not tag or T ~= 'timers:' .. tag then return nil end
  if room_cache_n >= ROOM_CACHE_MAX then room_cache, room_cache_n = {}, 0 end
  c = { P = P, T = T }
  room_cache[P] = c
  room_cache_n = room_cache_n + 1
  return c
end

-- answerIdx strings in canonical form (the only ones the hot path takes; 0..MAX_OPTIONS-1) -> the option
-- and its counter. Literal tables: the library's body runs where `string` is not yet reachable.
local OPTION = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6, ['7'] = 7 }
local OPTION_COUNTER = { ['0'] = 'd0', ['1'] = 'd1', ['2'] = 'd2', ['3'] = 'd3', ['4'] = 'd4', ['5'] = 'd5',
  ['6'] = 'd6', ['7'] = 'd7' }

-- The open question of cache entry c as of the room field `qopen` (set_qopen), parsed once per value.
-- False when the value does not parse (then the checked path decides): so also a qopen written by
-- another v6 build without <gen>, whose staleness could not be told.
local function open_of(c, qopen)
  if c.qopen == qopen then return true end
  local gen, cur, qno, qstart, p, v = string.match(qopen, '^(%d+):(%d+):(%d+):(%d+):(p?)(%d+)$')
  if not gen then return false end
  c.qopen, c.gen, c.cur, c.qno, c.qstart = qopen, gen, cur, tonumber(qno), tonumber(qstart)
  c.qk = c.P .. ':q:' .. cur
  c.ack = '{"received":true,"qIndex":' .. cur .. ',"serverTime":'
  if p == 'p' then
    c.prem, c.deadline = v, math.huge -- paused: no running deadline, the frozen remaining time
  else
    c.prem, c.endsAt, c.deadline = nil, tonumber(v), tonumber(v) + GRACE_MS
  end
  return true
end

-- The room's `np` (its text as HMGET read it) as a number, converted once per value in cache entry c.
local function players_of(c, np)
  if np ~= c.np then c.np, c.np_n = np, tonumber(np) or 0 end
  return c.np_n
end

-- Per answer, five Redis calls: HMGET of 4 room fields and the player's `m:<pid>` (its presence is the
-- membership check; qopen is trusted only while the room's gen is the one it was written at: see
-- set_qopen), TIME, the HSETNX lock (which stores the record) and the option and answered counters. The
-- strings it makes are the two field names, the time, the record and the reply; increments go as strings
-- (a Lua number argument is formatted with %.14g), and no text is converted to a number but `np` when it
-- changes (a cache entry field) and `aw` when someone is away. The player id needs no pattern check
-- here: only a member has an `m:` field (a member's id passed arg_id at its join); anyone else's answer
-- goes to the checked path, which refuses it.
local function answer_fast(keys, args)
  local P, pid, qs, as = keys[1], args[1], args[2], args[3]
  local ai = OPTION[as]
  -- KEYS and ARGV hold strings only (no type() here: it makes its answer's string each time)
  if not ai or not P or not pid or #pid > 64 or pid == PLAYERS_PAD then
    return checked_answer(keys, args)
  end
  local call = rcall or capture()
  local c = room_keys(P, keys[2])
  if not c then return checked_answer(keys, args) end
  local qopen, np, aw, gen, member =
    unpack(call('HMGET', P, 'qopen', 'np', 'aw', 'gen', MEMBER_PREFIX .. pid))
  if member and qopen and open_of(c, qopen) and gen == c.gen and qs == c.cur and ai < c.qno then
    local now, ns = now_ms_text()
    if now >= c.qstart and now <= c.deadline then
      local qk = c.qk
      if call('HSETNX', qk, 'a:' .. pid, as .. ':' .. ns .. ':' .. (c.prem or int(c.endsAt - now))) == 1 then
        call('HINCRBY', qk, OPTION_COUNTER[as], '1')
        aw = (aw and aw ~= '0') and answered_while_away(P, pid, tonumber(aw) or 0) or 0
        if call('HINCRBY', qk, 'n', '1') >= players_of(c, np) - aw then
          local r = checked_reveal(keys, { now })
          if type(r) == 'table' then return r end -- an error reply
        end
        return c.ack .. ns .. '}'
      end
    end
  end
  return checked_answer(keys, args)
end

-- The early reveal of answer_fast and answer_batch (the answered count has reached the players who are
-- not away), as a function `api` can wrap: maybe_early_reveal checks it again, with its guard that someone
-- is connected.
local function reveal_when_all_answered(keys, args)
  maybe_early_reveal(room_of(keys, true), args[1])
  return ''
end

-- answer_batch
-- KEYS: room, timers
-- ARGV: playerId, qIndex, answerIdx, playerId, qIndex, answerIdx, ...   (1..ANSWER_BATCH_MAX triples, the
--       answers of one room that reached an edge together, in arrival order; HMACs verified by the edge)
-- Reply: an array with one element per answer, in ARGV order: what `answer_submit` would have replied to
--        that answer called at that point — its AnswerAck JSON string, or its error reply
--        "<code> <detail>" (room_not_found, unauthorized, kicked, wrong_state, wrong_question, too_early,
--        late_answer, already_answered, rate_limited, bad_payload) as an error element of the array.
-- Error (the whole call, nothing written): bad_payload when ARGV is not 1..ANSWER_BATCH_MAX triples.
-- The fixed part of an answer is paid once per batch: one HMGET of the room (answer_fast's four fields:
-- the open question from `qopen`), one TIME (every answer the batch accepts has the same serverTime), one
-- HMGET of the question's answered count and the players' a:<pid> fields, one HMGET of their membership
-- (their m:<pid> fields in the room hash: a player who joined under v9 takes the checked path); then the
-- accepted records go in with one HSET and the counters with one HINCRBY per option and one for `n`. An
-- answer that the batch cannot accept as it stands (a refusal, a second answer of the same player, a non-member, a non-canonical argument) is
-- written out up to there, then goes through answer_submit's checked path alone, and the batch reads the
-- room (3 reads, not the players' fields: those are read once per batch) again after it. When the answered count reaches the room's size the question is revealed at that
-- answer, as answer_submit would: the answers after it are refused (late_answer).
local ANSWER_BATCH_MAX = 256

local function answer_batch(keys, args)
  local n = #args
  if n == 0 or n % 3 ~= 0 or n > 3 * ANSWER_BATCH_MAX then
    return redis.error_reply('bad_payload ARGV must be 1..' .. ANSWER_BATCH_MAX
      .. ' (playerId, qIndex, answerIdx) triples')
  end
  local P = keys[1]
  local c = P and room_keys(P, keys[2])
  local out = {}
  -- Read once per batch, for the answers from `from` on: whether each player already has a record of the
  -- open question (seen) and is a member (member). Still true of every player the batch has not handled
  -- yet (`handled`) after an answer went through the checked path: that path writes only its own
  -- player's fields. So the batch reads each field once, however many answers take the checked path.
  local seen, member, from, seen_qk
  local handled = {}
  -- the room as read for the next answers (fresh false: read it again before the next one)
  local fresh, open, cur, qno, np, cnt, qk, now, ns, rem, ack, awb
  local recs, k, dist = {}, 0, {}
  local function flush()
    if k > 0 then
      redis.call('HSET', qk, unpack(recs, 1, 2 * k))
      -- counts as texts (int_text): a Lua number argument is formatted by Redis with %.17g
      for o, m in pairs(dist) do redis.call('HINCRBY', qk, OPTION_COUNTER[o], int_text(m)) end
      redis.call('HINCRBY', qk, 'n', int_text(k))
      recs, k, dist = {}, 0, {}
    end
  end
  for i = 1, n, 3 do
    local pid, qs, as = args[i], args[i + 1], args[i + 2]
    local ai = OPTION[as] -- a canonical option index, else the checked path (which refuses it)
    local reply
    -- no pattern check of pid: only a member has an m:<pid> field (answer_fast's rule)
    if c and ai and #pid <= 64 then
      if not fresh then
        -- the room as answer_fast reads it: qopen (trusted while gen is the one it was written at), np, aw
        fresh, open = true, false
        local qopen, npv, aw, gen = unpack(redis.call('HMGET', P, 'qopen', 'np', 'aw', 'gen'))
        if qopen and open_of(c, qopen) and gen == c.gen then
          now, ns = now_ms_text()
          if now >= c.qstart and now <= c.deadline then
            -- everyone answered: every player but those away (answer_fast's early reveal)
            awb = (aw and aw ~= '0') and (tonumber(aw) or 0) or 0
            open, cur, qno, np, qk = true, c.cur, c.qno, players_of(c, npv) - awb, c.qk
            rem = c.prem or int(c.endsAt - now)
            ack = c.ack .. ns .. '}'
            if seen_qk ~= qk then
              local af, mf = { 'n' }, {}
              for j = i, n, 3 do
                af[#af + 1] = 'a:' .. args[j]
                mf[#mf + 1] = MEMBER_PREFIX .. args[j]
              end
              seen = redis.call('HMGET', qk, unpack(af))
              member = redis.call('HMGET', P, unpack(mf))
              from, seen_qk, cnt = i, qk, tonumber(seen[1]) or 0
            else
              cnt = tonumber(redis.call('HGET', qk, 'n')) or 0
            end
          end
        end
      end
      local j = open and (i - from) / 3 + 1 -- this answer's place in member (in seen after `n`)
      if open and qs == cur and ai < qno and not handled[pid] and not seen[j + 1] and member[j] then
        handled[pid] = true
        recs[2 * k + 1], recs[2 * k + 2] = 'a:' .. pid, as .. ':' .. ns .. ':' .. rem
        k = k + 1
        dist[as] = (dist[as] or 0) + 1 -- by the option's text (OPTION_COUNTER's key)
        cnt = cnt + 1
        reply = ack
        -- an away player's answer (answered_while_away): one fewer away without an answer
        if awb > 0 then
          local left = answered_while_away(P, pid, awb)
          np, awb = np + (awb - left), left
        end
        if cnt >= np then
          flush()
          local r = checked_reveal(keys, { now })
          if type(r) == 'table' then reply = r end -- an error reply
          fresh = false
        end
      end
    end
    if not reply then
      flush()
      local ok, r = pcall(checked_answer, keys, { pid, qs, as })
      if not ok then r = { err = type(r) == 'table' and r.err or tostring(r) } end
      reply = r
      if type(pid) == 'string' then handled[pid] = true end
      fresh = false
    end
    out[#out + 1] = reply
  end
  flush()
  return out
end

-- ───────────────────────────── host controls ─────────────────────────────

local function open_question(keys, args, allow_paused)
  local R = room_of(keys, true)
  local r = hm(R.P, { 'state', 'host', 'cur', 'paused', 'endsAt', 'prem' })
  require_room(r)
  require_host(r, args[1])
  if r.state ~= 'ACTIVE' then fail('wrong_state', 'no question is open') end
  if not allow_paused and r.paused == '1' then fail('wrong_state', 'the question is paused') end
  return R, r
end

-- host_pause
-- KEYS: room, timers
-- ARGV: hostToken
-- Reply: OkReply {"event":"host:pause"}. Stores the remaining time, supersedes the question_end schedule,
--        publishes game:paused {qIndex, remainingMs, pausedAt}. Answers are still accepted while paused
--        (time bonus from the frozen remaining time). Errors: not_host, wrong_state (not ACTIVE, or paused).
local function host_pause(keys, args)
  local R, r = open_question(keys, args, false)
  local now = now_ms()
  local rem = math.max(0, tonumber(r.endsAt) - now)
  redis.call('HINCRBY', R.P, 'gen', 1)
  redis.call('HSET', R.P, 'paused', 1, 'prem', int(rem), 'pausedAt', int(now))
  set_qopen(R)
  emit(R, 'game:paused', obj({ kv('qIndex', r.cur), kv('remainingMs', int(rem)), kv('pausedAt', int(now)) }))
  return ok_reply('host:pause')
end

-- host_resume
-- KEYS: room, timers
-- ARGV: hostToken
-- Reply: OkReply {"event":"host:resume"}. endsAt = now + remaining; reschedules question_end; publishes
--        game:resumed {qIndex, endsAt}. Errors: not_host, wrong_state (not paused).
local function host_resume(keys, args)
  local R, r = open_question(keys, args, true)
  if r.paused ~= '1' then fail('wrong_state', 'the question is not paused') end
  local now = now_ms()
  local endsAt = now + tonumber(r.prem)
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  -- a fresh progress ticker (the old one may have been trimmed from the stream during a long pause); the
  -- old one turns stale. Its ticks stay on the question's 1-second grid.
  local qstart = tonumber(redis.call('HGET', R.P, 'qstart'))
  local pev = tonumber(redis.call('HGET', R.P, 'pev')) or PROGRESS_EVERY_MS
  local tick = qstart + (math.floor((now - qstart) / pev) + 1) * pev
  redis.call('HSET', R.P, 'paused', 0, 'prem', 0, 'endsAt', int(endsAt), 'pgen', int(gen))
  set_qopen(R)
  emit(R, 'game:resumed', obj({ kv('qIndex', r.cur), kv('endsAt', int(endsAt)) }))
  schedule(R, now, 'question_end', tonumber(r.cur), gen, endsAt + GRACE_MS)
  schedule(R, now, 'progress', tonumber(r.cur), gen, tick, pev)
  return ok_reply('host:resume')
end

-- host_skip
-- KEYS: room, timers
-- ARGV: hostToken, reason (may be "")
-- Reply: OkReply {"event":"host:skip:question"}. Reveals now (answers so far are scored), with
--        skipped:true. Errors: not_host, wrong_state (no open question).
local function host_skip(keys, args)
  local R, r = open_question(keys, args, true)
  reveal(R, now_ms(), true)
  return ok_reply('host:skip:question')
end

-- host_extend
-- KEYS: room, timers
-- ARGV: hostToken, addSeconds (1..120)
-- Reply: OkReply {"event":"host:extend:time"}. endsAt += addSeconds (while paused: the remaining time
--        grows); reschedules question_end; publishes game:time:extended {qIndex, endsAt, addSeconds}.
--        Errors: not_host, wrong_state, bad_payload.
local function host_extend(keys, args)
  local R, r = open_question(keys, args, true)
  local add = arg_int(args[2], 'addSeconds', 1, MAX_EXTEND_S)
  local now = now_ms()
  local left = (r.paused == '1') and tonumber(r.prem) or (tonumber(r.endsAt) - now)
  if left + add * 1000 > MAX_OPEN_MS then
    fail('bad_payload', 'a question may not have more than ' .. int(MAX_OPEN_MS / 1000) .. ' s left')
  end
  local gen = redis.call('HINCRBY', R.P, 'gen', 1)
  local endsAt
  if r.paused == '1' then
    local rem = tonumber(r.prem) + add * 1000
    redis.call('HSET', R.P, 'prem', int(rem))
    endsAt = now + rem
  else
    endsAt = tonumber(r.endsAt) + add * 1000
    redis.call('HSET', R.P, 'endsAt', int(endsAt))
    schedule(R, now, 'question_end', tonumber(r.cur), gen, endsAt + GRACE_MS)
  end
  set_qopen(R)
  emit(R, 'game:time:extended', obj({ kv('qIndex', r.cur), kv('endsAt', int(endsAt)), kv('addSeconds', int(add)) }))
  return ok_reply('host:extend:time')
end

-- ───────────────────────────── timers ─────────────────────────────

local function fired(kind, q, extra)
  local m = { kv('fired', 'true'), kv('kind', js(kind)), kv('q', int(q)) }
  if extra then m[#m + 1] = extra end
  return obj(m)
end

local function not_fired(why, extra)
  local m = { kv('fired', 'false'), kv('why', js(why)) }
  if extra then m[#m + 1] = extra end
  return obj(m)
end

local function early(due, now)
  return not_fired('early', kv('retryInMs', int(due - now)))
end

-- timer_fire
-- KEYS: room, timers
-- ARGV: kind, q, gen   (exactly as in the timer stream entry)
-- Reply: {"fired":true,"kind":K,"q":Q} when it changed the room;
--        {"fired":false,"why":"stale"|"gone"|"unchanged"|"duplicate"} when it changed nothing (a duplicate,
--        late or superseded fire, or a room that no longer exists);
--        {"fired":false,"why":"early","retryInMs":N} when the due time has not come by the Redis clock:
--        fire again after N ms. progress replies also carry "continue": whether to keep ticking.
-- Idempotent: the same entry fired twice changes the room at most once.
-- Errors: bad_timer (unknown kind, malformed q/gen: the entry can never fire), bad_payload (bad keys).
local TIMER_KINDS = { countdown_end = true, question_end = true, next_question = true, progress = true,
  lobby_flush = true, cleanup = true, abandon = true, score = true }

local function timer_fire(keys, args)
  local R = room_of(keys, true)
  local kind = args[1]
  local q, gen = tonumber(args[2]), tonumber(args[3])
  -- a malformed entry can never fire: a distinct code lets the engine dead-letter it at once
  if not TIMER_KINDS[kind] then fail('bad_timer', 'unknown timer kind ' .. tostring(kind)) end
  if not q or q < 0 or q ~= math.floor(q) then fail('bad_timer', 'q must be a non-negative integer') end
  if not gen or gen < 0 or gen ~= math.floor(gen) then fail('bad_timer', 'gen must be a non-negative integer') end
  local r = hm(R.P, { 'state', 'cur', 'gen', 'paused', 'endsAt', 's_rp', 'nq', 'np', 'pgen', 'sq' })
  if not r.state then
    if kind == 'progress' then return not_fired('gone', kv('continue', 'false')) end
    return not_fired('gone')
  end
  local now = now_ms()
  local cur = tonumber(r.cur)
  local current = tonumber(r.gen) == gen
  if kind == 'countdown_end' then
    if r.state ~= 'STARTING' or not current then return not_fired('stale') end
    local startsAt = tonumber(redis.call('HGET', R.P, 'startsAt'))
    local due = startsAt - show_lead(redis.call('HGET', R.P, 's_cd'))
    if now < due then return early(due, now) end
    show_question(R, 0, now, startsAt)
    return fired(kind, 0)
  elseif kind == 'question_end' then
    if r.state ~= 'ACTIVE' or cur ~= q or not current or r.paused == '1' then return not_fired('stale') end
    local due = tonumber(r.endsAt) + GRACE_MS
    if now < due then return early(due, now) end
    reveal(R, now, false)
    return fired(kind, q)
  elseif kind == 'score' then
    -- the next step of scoring question q (reveal): repeated by the engine while continue is true
    if r.state ~= 'REVEAL' or cur ~= q or not current or tonumber(r.sq) ~= q then return not_fired('stale') end
    if score_step(R, q) then
      finish_scoring(R, q, gen, now)
      return fired(kind, q)
    end
    -- more to score: the engine fires this same entry again at once (as after an early fire)
    return fired(kind, q, kv('why', '"more"') .. ',' .. kv('retryInMs', '0'))
  elseif kind == 'next_question' then
    if r.state ~= 'REVEAL' or cur ~= q - 1 or not current or r.sq then return not_fired('stale') end
    local showAt = tonumber(redis.call('HGET', R.P, 'revAt')) + tonumber(r.s_rp)
    local due = showAt - show_lead(r.s_rp)
    if now < due then return early(due, now) end
    if q >= tonumber(r.nq) then
      end_game(R, now, 'finished')
      return fired('game_end', q)
    end
    show_question(R, q, now, showAt)
    return fired(kind, q)
  elseif kind == 'progress' then
    -- the ticker of this question's show (or of its last resume: `pgen`); pause/extend keep it going.
    if r.state ~= 'ACTIVE' or cur ~= q or tonumber(r.pgen) ~= gen then
      return not_fired('stale', kv('continue', 'false'))
    end
    local p = hm(R.P, { 'qstart', 'pslot', 'pev' })
    local pev = tonumber(p.pev) or PROGRESS_EVERY_MS
    local slot = math.floor((now - tonumber(p.qstart) + pev / 2) / pev)
    if slot <= tonumber(p.pslot) then return not_fired('duplicate', kv('continue', 'true')) end
    local n = tonumber(redis.call('HGET', qkey(R, q), 'n')) or 0
    redis.call('HSET', R.P, 'pslot', int(slot))
    -- every tick, changed or not: it goes to the hosts (and the players that asked) only, and a host that
    -- reloads has the count again within one tick (a live tick is never replayed)
    publish_live(R, 'game:answer:progress', obj({ kv('qIndex', int(q)), kv('answeredCount', int(n)),
      kv('totalCount', int(tonumber(r.np) or 0)) }))
    return fired(kind, q, kv('continue', 'true'))
  elseif kind == 'lobby_flush' then
    local f = hm(R.P, { 'fgen', 'pflush' })
    if tonumber(f.fgen) ~= gen or f.pflush ~= '1' then return not_fired('stale') end
    if not flush_joins(R, now) then
      redis.call('HSET', R.P, 'pflush', 0)
      return not_fired('unchanged')
    end
    return fired(kind, 0)
  elseif kind == 'cleanup' then
    if r.state ~= 'ENDED' or not current then return not_fired('stale') end
    local e = hm(R.P, { 'ended', 'holdUntil' })
    local due = math.max(tonumber(e.ended) + END_TTL * 1000, tonumber(e.holdUntil) or 0)
    if now < due then return early(due, now) end
    for _, s in ipairs(FIXED) do redis.call('UNLINK', R.P .. s) end
    for k = 0, cur do redis.call('UNLINK', qkey(R, k), lb_after(R, k)) end
    redis.call('UNLINK', R.P .. ':lbn')
    return fired(kind, q)
  elseif kind == 'abandon' then
    -- gen 0 is the check scheduled at create; later checks carry `agen` (one live check per room).
    if r.state == 'ENDED' or gen ~= (tonumber(redis.call('HGET', R.P, 'agen')) or 0) then
      return not_fired('stale')
    end
    -- Every transition pushes the room's expiry ROOM_TTL out; close to it, nobody is playing.
    local ttl_ms = redis.call('PTTL', R.P)
    if ttl_ms > ABANDON_MARGIN * 1000 then
      -- not yet: a fresh entry (a far-off entry would be trimmed from the stream before it is due)
      local agen = redis.call('HINCRBY', R.P, 'agen', 1)
      local due = now + math.min(ABANDON_CHECK_MS, ttl_ms - ABANDON_MARGIN * 1000 + 1000)
      schedule(R, now, 'abandon', 0, agen, due)
      return not_fired('unchanged')
    end
    end_game(R, now, 'abandoned')
    return fired('game_end', cur)
  end
end

-- ───────────────────────────── reads ─────────────────────────────

-- results (no-writes)
-- KEYS: room[, timers]
-- ARGV: qIndex, playerId, playerId, ... (1..1000 ids)
-- Reply: a flat array (not JSON: building an AnswerResult's JSON here cost ~3 us of Redis per player;
--        the caller builds it): [1] totalPlayers (the room's size at qIndex's reveal), [2] the correct
--        option's index, then three values per id, in the ids' order: the total after question qIndex (a
--        string; nil when the id was not in that leaderboard), the rank (an integer, 1-based: players
--        with more points + 1; among the room as it is now for the last scored question, as it was when
--        the next question had been scored for an earlier one; nil with the total), and the stored answer
--        "idx:ms:points:streak" (nil: no answer; NO_ANSWER 'x': refused without an answer).
--        For the last scored question (its game:leaderboard is out) and the RESULTS_KEEP questions
--        before it, whatever is open now: the edge fetches them when the leaderboard arrives.
-- Errors: room_not_found, wrong_state (not revealed and scored yet), wrong_question (more than
--         RESULTS_KEEP questions ago).
local function results(keys, args)
  local R = room_of(keys, false)
  local q = arg_int(args[1], 'qIndex', 0, 1000000)
  local nids = #args - 1
  if nids < 1 or nids > RESULTS_MAX then fail('bad_payload', 'results takes 1..' .. RESULTS_MAX .. ' playerIds') end
  local r = hm(R.P, { 'state', 'np', 'lsq' })
  require_room(r)
  -- the last scored question's totals are P:lb; earlier ones are kept in P:lb:<q> (lb_after)
  local scored = tonumber(r.lsq) or -1
  if q > scored then fail('wrong_state', 'question ' .. int(q) .. ' is not revealed yet') end
  if q < scored - RESULTS_KEEP then
    fail('wrong_question', 'results of question ' .. int(q) .. ' are no longer available')
  end
  local lb = R.P .. ':lb'
  if q < scored then lb = lb_after(R, q) end
  local ids, afields = {}, { 'np' }
  for k = 2, #args do
    ids[#ids + 1] = args[k]
    afields[#afields + 1] = 'a:' .. args[k]
  end
  local correct = tonumber(redis.call('HGET', R.Q, 'c' .. int(q)))
  -- [1] the room's size at the reveal (totalPlayers), then each player's answer
  local answers = redis.call('HMGET', qkey(R, q), unpack(afields))
  local totals = redis.call('ZMSCORE', lb, unpack(ids))
  local out = { tonumber(answers[1]) or tonumber(r.np) or 0, correct or false }
  local rank_of = {} -- total -> rank, within this call (ties are common: 0, equal points)
  local n = 2
  for k = 1, #ids do
    local total = totals[k]
    if total then
      local rank = rank_of[total]
      if not rank then
        rank = redis.call('ZCOUNT', lb, '(' .. total, '+inf') + 1
        rank_of[total] = rank
      end
      out[n + 1], out[n + 2], out[n + 3] = total, rank, answers[k + 1] or false
    else
      out[n + 1], out[n + 2], out[n + 3] = false, false, false
    end
    n = n + 3
  end
  return out
end

-- game_export (no-writes)
-- KEYS: room[, timers]
-- ARGV: offset (0-based rank position), count (1..1000)
-- Reply (an array, not JSON: the caller decodes; building JSON here cost ~4 us per player and question):
--   [1] game JSON {gameCode, roomId, quizId, title, endReason, questionCount, questionsPlayed,
--       playerCount, createdAt, startedAt?, endedAt}
--   [2] the offset of the next page, or -1 after the last
--   [3] per question played, its show time (epoch ms) or nil;  [4] per question played, its correct index
--   [5] flat, per player in rank order: playerId, "<avatar>:<name>", total, rank, then per question played
--       the stored answer "idx:serverMs:points:streak" or nil.
--   Rank order is total desc; ties share a rank and are ordered by playerId descending (ZREVRANGE).
--   Only an ENDED room exports: it is what the results writer stores in PostgreSQL.
-- Errors: room_not_found, wrong_state (not ended), bad_payload.
local function game_export(keys, args)
  local R = room_of(keys, false)
  local off = arg_int(args[1], 'offset', 0, 100000000)
  local count = arg_int(args[2], 'count', 1, EXPORT_MAX)
  local r = hm(R.P, { 'state', 'rid', 'quizId', 'title', 'endReason', 'nq', 'cur', 'np', 'created',
    'startsAt', 'ended', 'lsq' })
  local scored = tonumber(r.lsq) or -1
  require_room(r)
  if r.state ~= 'ENDED' then fail('wrong_state', 'only an ended game exports its results') end
  local played = tonumber(r.cur) + 1
  local g = { kv('gameCode', js(R.code)), kv('roomId', js(r.rid)), kv('quizId', js(r.quizId)),
    kv('title', js(r.title)), kv('endReason', js(r.endReason or 'finished')), kv('questionCount', r.nq),
    kv('questionsPlayed', int(played)), kv('playerCount', int(tonumber(r.np) or 0)),
    kv('createdAt', r.created) }
  if r.startsAt then g[#g + 1] = kv('startedAt', r.startsAt) end
  g[#g + 1] = kv('endedAt', r.ended)
  local shown, correct = {}, {}
  for q = 0, played - 1 do
    shown[q + 1] = redis.call('HGET', qkey(R, q), 'at') or false
    correct[q + 1] = redis.call('HGET', R.Q, 'c' .. int(q)) or false
  end
  local lb = R.P .. ':lb'
  local page = redis.call('ZREVRANGE', lb, off, off + count - 1, 'WITHSCORES')
  local ids, afields = {}, {}
  for k = 1, #page, 2 do
    ids[#ids + 1] = page[k]
    afields[#afields + 1] = 'a:' .. page[k]
  end
  local out = {}
  if #ids > 0 then
    local answers = {}
    for q = 0, played - 1 do answers[q] = redis.call('HMGET', qkey(R, q), unpack(afields)) end
    local players = redis.call('HMGET', R.P .. ':players', unpack(ids))
    local rank_of = {}
    for k, pid in ipairs(ids) do
      local total = page[2 * k]
      local rank = rank_of[total]
      if not rank then
        rank = redis.call('ZCOUNT', lb, '(' .. total, '+inf') + 1
        rank_of[total] = rank
      end
      out[#out + 1] = pid
      out[#out + 1] = players[k] or false
      out[#out + 1] = total
      out[#out + 1] = rank
      for q = 0, played - 1 do
        local v = answers[q][k]
        -- a refused player's marker is no answer; an answer to a question that was never scored (the
        -- game was abandoned while it was open) scored nothing: "idx:ms:0:0"
        if v == NO_ANSWER then
          v = false
        elseif v and q > scored then
          local a, ms, pts = split_answer(v)
          if a and not pts then v = int(a) .. ':' .. int(ms) .. ':0:0' end
        end
        out[#out + 1] = v or false
      end
    end
  end
  local nxt = -1
  if #ids == count then nxt = off + count end
  return { obj(g), nxt, shown, correct, out }
end

-- results_hold
-- KEYS: room, timers
-- ARGV: ms (0..3600000)
-- Reply: {"held":true,"until":epochMs} — an ENDED room is kept (expiry and cleanup pushed out) until now +
--        ms, so the results writer can export it while PostgreSQL is down; ms 0 releases the hold (the room
--        then goes at its normal time). {"held":false} when the room is gone or not ended.
local function results_hold(keys, args)
  local R = room_of(keys, true)
  local ms = arg_int(args[1], 'ms', 0, HOLD_MAX_MS)
  local r = hm(R.P, { 'state', 'ended', 'cur' })
  if r.state ~= 'ENDED' then return '{"held":false}' end
  local now = now_ms()
  local hold = now + ms
  redis.call('HSET', R.P, 'holdUntil', int(hold))
  local until_end = tonumber(r.ended) + END_TTL * 1000
  local ttl = math.ceil((math.max(hold, until_end) - now) / 1000) + 60
  touch(R, ttl, -1)
  for k = 0, tonumber(r.cur) do
    redis.call('EXPIRE', qkey(R, k), ttl)
    redis.call('EXPIRE', lb_after(R, k), ttl)
  end
  return '{"held":true,"until":' .. int(hold) .. '}'
end

-- The ReconnectState of player pid ("host" or "" for no player) as JSON.
local function state_json(R, pid, now)
  local r = hm(R.P, { 'state', 'seq', 'cur', 'nq', 'np', 'endsAt', 'paused', 'prem', 'tlim', 'qbase', 'lbj', 'qstart',
    'sq' })
  local cur = tonumber(r.cur)
  local active = r.state == 'ACTIVE'
  -- revealed and still being scored (`score` fires): no rank and no result yet; the edge delivers the
  -- player's result after the question's leaderboard
  local scoring = r.state == 'REVEAL' and r.sq ~= nil
  local paused = active and r.paused == '1'
  local remaining, current_q, answered, pending = 0, nil, false, 0
  if active then
    local endsAt = tonumber(r.endsAt)
    if paused then
      remaining = tonumber(r.prem)
      endsAt = now + remaining
    else
      remaining = math.max(0, endsAt - now)
    end
    current_q = show_json(R, cur, endsAt, r.tlim, r.qbase, r.nq, r.qstart)
  end
  local in_reveal = r.state == 'REVEAL' and cur and cur >= 0
  if in_reveal then
    -- the question just revealed, so that a returning client can show the reveal, not a blank wait
    current_q = show_json(R, cur, tonumber(r.endsAt) or now, r.tlim, r.qbase, r.nq, r.qstart)
  end
  local score, streak, rank = 0, 0, 0
  local result
  local is_player = pid ~= '' and pid ~= 'host'
  if is_player then
    local total = redis.call('ZSCORE', R.P .. ':lb', pid)
    if total then
      score = tonumber(total)
      local revealed = cur
      if active then
        revealed = cur - 1
        -- an answer to the open question is not scored yet (scoring runs at the reveal): the total
        -- has none of it
        if split_answer(redis.call('HGET', qkey(R, cur), 'a:' .. pid)) then answered = true end
      elseif scoring then
        revealed = cur - 1 -- the totals and streaks are still those after the question before
      end
      score = score - pending
      if revealed >= 0 then streak = streak_of(redis.call('HGET', qkey(R, revealed), 'a:' .. pid)) end
      if not active and not scoring then
        rank = redis.call('ZCOUNT', R.P .. ':lb', '(' .. total, '+inf') + 1
      end
      if in_reveal and not scoring then
        -- this player's game:answer:result of the revealed question, as the edge delivered it
        local a, _, pts = split_answer(redis.call('HGET', qkey(R, cur), 'a:' .. pid))
        local c = tonumber(redis.call('HGET', R.Q, 'c' .. int(cur)))
        local res = { kv('qIndex', int(cur)) }
        if a then res[#res + 1] = kv('answerIdx', int(a)) end
        for _, v in ipairs({ kv('correct', jbool(a ~= nil and a == c)), kv('points', int(pts or 0)),
          kv('total', int(score)), kv('rank', int(rank)), kv('streak', int(streak)),
          kv('totalPlayers', int(tonumber(r.np) or 0)) }) do
          res[#res + 1] = v
        end
        result = obj(res)
      end
    end
  end
  local m = { kv('gameCode', js(R.code)), kv('playerId', js(pid)), kv('state', js(r.state)), kv('seq', r.seq) }
  if current_q then m[#m + 1] = kv('currentQ', current_q) end
  for _, v in ipairs({ kv('paused', jbool(paused)), kv('timeRemainingMs', int(remaining)),
    kv('answered', jbool(answered)), kv('score', int(score)), kv('streak', int(streak)), kv('rank', int(rank)),
    kv('totalPlayers', int(tonumber(r.np) or 0)), kv('leaderboard', r.lbj or '[]'), kv('serverTime', int(now)) }) do
    m[#m + 1] = v
  end
  if in_reveal then m[#m + 1] = kv('reveal', reveal_json(R, cur)) end
  if result then m[#m + 1] = kv('result', result) end
  return obj(m), r
end

-- snapshot (no-writes)
-- KEYS: room[, timers]
-- ARGV: playerId ("" or "host" for no player's own figures)
-- Reply: ReconnectState JSON. While a question is open, score/streak/leaderboard are as of the last reveal
--        and rank is 0 (ranks move with unrevealed answers, so they wait for the reveal).
-- Errors: room_not_found.
local function snapshot(keys, args)
  local R = room_of(keys, false)
  if redis.call('EXISTS', R.P) == 0 then fail('room_not_found', 'no live room has this game code') end
  local s = state_json(R, args[1] or '', now_ms())
  return s
end

-- reconnect
-- KEYS: room, timers
-- ARGV: playerId (or "host"), sessionToken (the host's hostToken), lastSeq (or "" for a snapshot)
-- Reply: {"playerId","host":bool,"answerSecret"?,"epoch"?,"seq","events":[envelope, ...]} with the missed
--        room events after lastSeq (raw envelope JSON, in seq order) when they are all still in the log, else
--        {"playerId","host","answerSecret"?,"epoch"?,"seq","state":ReconnectState}.
-- A player's reconnect writes presence: the player's connection epoch goes up by one (`epoch` in the reply:
-- the edge passes it to player_away when this socket closes, so that the close of an older socket changes
-- nothing), and a player marked away is back (counted again for "everyone answered" from now on, announced
-- by room:player:presence). The host's reconnect writes nothing.
-- Errors: room_not_found, kicked, unauthorized.
local function reconnect(keys, args)
  local R = room_of(keys, true)
  local pid, token, last = args[1] or '', args[2] or '', args[3] or ''
  local r = hm(R.P, { 'state', 'host' })
  require_room(r)
  local is_host = pid == 'host'
  local secret, epoch
  if is_host then
    if token == '' or r.host ~= token then fail('unauthorized', 'wrong hostToken') end
  else
    arg_id(pid, 'playerId', 1, 64)
    if redis.call('HEXISTS', R.P .. ':kicked', 'p:' .. pid) == 1 then fail('kicked', 'this player was removed') end
    local sess = redis.call('HGET', R.P .. ':sess', pid)
    if not sess or sess ~= token then fail('unauthorized', 'unknown player or wrong sessionToken') end
    secret = member_secret(R, pid)
    -- presence first, so that a room:player:presence it publishes is inside `seq` (replayed or in the state)
    epoch = redis.call('HINCRBY', R.P .. ':conn', 'e:' .. pid, 1)
    expire_with_room(R, ':conn')
    if redis.call('HEXISTS', R.P .. ':conn', 'a:' .. pid) == 1 then
      unmark_away(R, pid)
      if r.state ~= 'ENDED' then note_presence(R, now_ms(), 'b', pid) end
    end
  end
  local seq = tonumber(redis.call('HGET', R.P, 'seq'))
  local head = { kv('playerId', js(pid)), kv('host', jbool(is_host)) }
  if secret then head[#head + 1] = kv('answerSecret', js(secret)) end
  if epoch then head[#head + 1] = kv('epoch', int(epoch)) end
  head[#head + 1] = kv('seq', int(seq))
  if last ~= '' then
    local ls = arg_int(last, 'lastSeq', 0, 1e15)
    if ls >= seq then
      head[#head + 1] = kv('events', '[]')
      return obj(head)
    end
    if seq - ls <= LOG_MAX then
      local entries = redis.call('XRANGE', R.P .. ':log', int(ls + 1) .. '-0', '+')
      if #entries > 0 and entries[1][1] == int(ls + 1) .. '-0' then
        local evs = {}
        for k, e in ipairs(entries) do evs[k] = e[2][2] end
        head[#head + 1] = kv('events', arr(evs))
        return obj(head)
      end
    end
  end
  local s = state_json(R, is_host and 'host' or pid, now_ms())
  head[#head + 1] = kv('state', s)
  return obj(head)
end

-- player_away
-- KEYS: room, timers
-- ARGV: playerId, epoch (the connection epoch of the socket that closed: 0 for the socket of room_join,
--       else the `epoch` of the reconnect that opened it)
-- Reply: {"away":true} when the player is now away: kept in the room (place, score, name; they may
--        reconnect), but "everyone answered" no longer waits for them — if every other connected player
--        has answered the open question, it is revealed in this call; announced by room:player:presence.
--        {"away":false} when nothing changed: the player is not in the room (left, kicked), is already
--        away, holds a newer connection (a reconnect, possibly to another edge, came before this close
--        was processed), or the game is over. Errors: room_not_found, bad_payload.
local function player_away(keys, args)
  local R = room_of(keys, true)
  local pid = arg_id(args[1], 'playerId', 1, 64)
  local ep = arg_int(args[2], 'epoch', 0, 4294967295)
  local r = hm(R.P, { 'state', 'cur' })
  require_room(r)
  if r.state == 'ENDED' or redis.call('HEXISTS', R.P .. ':players', pid) == 0 then return '{"away":false}' end
  local c = redis.call('HMGET', R.P .. ':conn', 'e:' .. pid, 'a:' .. pid)
  if (tonumber(c[1]) or 0) ~= ep or c[2] then return '{"away":false}' end
  local now = now_ms()
  redis.call('HSET', R.P .. ':conn', 'a:' .. pid, 1)
  expire_with_room(R, ':conn')
  redis.call('HINCRBY', R.P, 'naway', 1)
  if r.state == 'ACTIVE' and not has_answer(R, tonumber(r.cur), pid) then redis.call('HINCRBY', R.P, 'aw', 1) end
  note_presence(R, now, 'a', pid)
  maybe_early_reveal(R, now)
  return '{"away":true}'
end

-- room_players (no-writes): the host's paged list of the room's players (the host page's lobby after a
-- reload: room:player:joined only announces joins as they happen).
-- KEYS: room[, timers]
-- ARGV: hostToken, offset (0..), count (1..PLAYERS_PAGE_MAX)
-- Reply: {"players":[PlayerInfo...],"totalCount","next"?} in leaderboard order (total desc, then
--        playerId desc: in the lobby, a stable order); next: the offset of the following page, absent
--        after the last. Errors: room_not_found, not_host, bad_payload.
local function room_players(keys, args)
  local R = room_of(keys, false)
  local r = hm(R.P, { 'state', 'host', 'np' })
  require_room(r)
  require_host(r, args[1])
  local offset = arg_int(args[2] or '0', 'offset', 0, 100000000)
  local count = arg_int(args[3] or '', 'count', 1, PLAYERS_PAGE_MAX)
  local ids = redis.call('ZREVRANGE', R.P .. ':lb', offset, offset + count - 1)
  local items = {}
  if #ids > 0 then
    local vals = redis.call('HMGET', R.P .. ':players', unpack(ids))
    for k, id in ipairs(ids) do
      if vals[k] then items[#items + 1] = player_json(id, vals[k]) end
    end
  end
  local np = tonumber(r.np) or 0
  local m = { kv('players', arr(items)), kv('totalCount', int(np)) }
  if #ids == count and redis.call('ZCARD', R.P .. ':lb') > offset + count then
    m[#m + 1] = kv('next', int(offset + count))
  end
  return obj(m)
end

-- rooms_list (no-writes): one partition's live rooms, newest first, for the ops view. The caller reads
-- each room's figures with `snapshot` (one slot per call).
-- KEYS: rooms:{pNN}
-- ARGV: count (0..ROOMS_LIST_MAX)
-- Reply: an array: [1] the number of live rooms in the partition, then code, created (epoch ms) pairs.
local function rooms_list(keys, args)
  local K = keys[1]
  if type(K) ~= 'string' or not string.find(K, '^rooms:{p%d%d+}$') then
    fail('bad_payload', 'KEYS[1] must look like rooms:{pNN}')
  end
  local count = arg_int(args[1] or '', 'count', 0, ROOMS_LIST_MAX)
  local out = { redis.call('ZCARD', K) }
  if count > 0 then
    local rows = redis.call('ZREVRANGE', K, 0, count - 1, 'WITHSCORES')
    for _, v in ipairs(rows) do out[#out + 1] = v end
  end
  return out
end

-- version (no-writes)
-- KEYS: none. ARGV: none. Reply: "ringside <VERSION>".
local function version()
  return 'ringside ' .. int(VERSION)
end

-- ───────────────────────────── registration ─────────────────────────────

-- Turns refusals raised by fail() into clean error replies ("<code> <detail>", no script suffix).
local function api(fn)
  return function(keys, args)
    local ok, res = pcall(fn, keys, args)
    if ok then return res end
    -- Redis's pcall hands the error over as the `err` string (as a table on some versions): a refusal
    -- starts with its lower-case code; Redis's own errors with an upper-case one (ERR, WRONGTYPE, OOM, ...).
    local msg = res
    if type(res) == 'table' then msg = res.err end
    if type(msg) == 'string' and string.find(msg, '^[a-z_]+ ') then
      return redis.error_reply(msg)
    end
    if type(res) == 'table' and type(res.err) ~= 'string' then
      error({ err = 'internal ' .. tostring(res[1] or 'error') }, 0)
    end
    error(res, 0)
  end
end

-- raw: `fn` handles its own errors (answer_fast), no `api` wrapper.
local function register(name, fn, readonly, raw)
  if raw then
    redis.register_function { function_name = name, callback = fn }
  elseif readonly then
    redis.register_function { function_name = name, callback = api(fn), flags = { 'no-writes' } }
  else
    redis.register_function { function_name = name, callback = api(fn) }
  end
end

register('version', version, true)
register('room_create', room_create)
register('room_join', room_join)
register('room_leave', room_leave)
register('room_kick', room_kick)
register('game_start', game_start)
checked_answer = api(answer_submit)
checked_reveal = api(reveal_when_all_answered)
register('answer_submit', answer_fast, false, 'raw')
register('answer_batch', answer_batch, false, 'raw')
register('host_pause', host_pause)
register('host_resume', host_resume)
register('host_skip', host_skip)
register('host_extend', host_extend)
register('timer_fire', timer_fire)
register('results', results, true)
register('snapshot', snapshot, true)
register('reconnect', reconnect)
register('player_away', player_away)
register('game_export', game_export, true)
register('results_hold', results_hold)
register('room_players', room_players, true)
register('rooms_list', rooms_list, true)
