"""The cluster's shared state in Redis: the key layout, the Lua script, the codecs.

Every change a worker makes to the shared state is one call of one Lua script
(``SCRIPT``), so that it is atomic in Redis (a script runs alone) and, with the server's
``appendfsync always``, on disk in Redis's append-only file before the reply: the worker
answers ``200`` only after that reply. The script takes a list of *guards* (checked
first; if one fails nothing changes) and a list of *operations* (applied in order).

Reads are plain commands (they write nothing, so they cost no fsync); every change is
then made under guards that what was read still holds (compare-and-set): the budget
still fits the chosen offer's worst case, the user's caps still allow it, a pending or
finalised decision is still the one the worker read. A failed guard changes nothing and
the worker starts the request over from a fresh read; one write (one fsync) per
request.

Keys (``P`` is ``"<namespace>:"``, see ``StorageConfig.namespace``):

=====================  ==================================================================
``P budget``           hash: the budget pacer's state (period, spent, reserved, expected,
                       lam, since, last_time, last_committed), in currency units
``P p:<id>``           a pending decision (``encode_pending``); no expiry
``P due``              zset: decision id -> when its feedback wait ends
``P f:<id>``           a finalised decision's event ids (JSON), for duplicate and late
                       feedback; expires ``FINALISED_KEEP_WAITS`` feedback waits later
                       (at least ``FINALISED_KEEP_MIN_SECONDS``)
``P c:<id>``           a finalised coupon's hold "expires,amount"; ``P coupon_due`` zset
``P rq:<request_id>``  an idempotency key: "<tag>\\0<decision JSON>", expires after the wait
``P caps:<user>``      hash d, o, p, s: the user's day, offers that day, period, discount
                       cost that period (as ``UserCaps``'s row); expires after a period
``P stats``            hash: the engine's counters, ``decided:<k>`` / ``bought:<k>`` (the
                       purchase rates' counts) and ``policy_updates``
``P policy``           the policy's merged statistics: float64 little-endian, the
                       statistics arrays of ``policy_stat_names`` one after the other
``P u:<worker>``       list: updates a worker made and has not folded into ``P policy``
``P workers``          set of worker ids; ``P hb:<worker>`` their heartbeats (expire)
``P lease:<id>``       who is finalising or applying feedback to a decision (SET NX PX)
``P fingerprint``      the engine configuration every worker must share
=====================  ==================================================================

Floats: Redis hashes hold strings; the script writes every number with
``string.format('%.17g', x)``, which round-trips an IEEE double exactly, and reads them
with ``tonumber`` (strtod, exact). Arithmetic in Lua is IEEE double, as in Python, so
the budget's sums are the same operations a single process does (only their order across
workers differs). The policy's statistics are added in Lua element by element as
float64 (``struct``): every update is folded exactly once, and the merged sums differ from
one process's only by the order of additions (relative error ~1e-16 per addition).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from ..engine._pending import PendingDecision, PendingStore

# Finalised decisions' event ids are kept this many feedback waits, and at least
# FINALISED_KEEP_MIN_SECONDS (late and duplicate feedback is recognised that long; a
# coupon's hold has its own expiry). The embedded engine bounds them by number instead
# (EngineConfig.remember_finalised); in Redis an expiry bounds them without a sweep.
FINALISED_KEEP_WAITS = 2.0
FINALISED_KEEP_MIN_SECONDS = 60.0

SCRIPT = r"""
local function fmt(x) return string.format('%.17g', x) end
local function hnum(k, f, d)
  local v = redis.call('HGET', k, f)
  if v then return tonumber(v) end
  return d
end
local cmd = ARGV[1]

-- the budget pacer (promobandit.constraints.BudgetPacer), state in a hash
local B = nil
local function bload(k, cfg)
  B = {k = k, cfg = cfg,
       period = hnum(k, 'period', 0), spent = hnum(k, 'spent', 0),
       reserved = hnum(k, 'reserved', 0), expected = hnum(k, 'expected', 0),
       lam = hnum(k, 'lam', cfg.lambda_init), since = hnum(k, 'since', 0),
       last_committed = hnum(k, 'last_committed', 0)}
  local lt = redis.call('HGET', k, 'last_time')
  if lt and lt ~= '' then B.last_time = tonumber(lt) else B.last_time = nil end
end
local function bsave()
  local lt = ''
  if B.last_time ~= nil then lt = fmt(B.last_time) end
  redis.call('HSET', B.k, 'period', fmt(B.period), 'spent', fmt(B.spent),
             'reserved', fmt(B.reserved), 'expected', fmt(B.expected), 'lam', fmt(B.lam),
             'since', fmt(B.since), 'last_time', lt, 'last_committed', fmt(B.last_committed))
end
local function broll(now)
  local c = B.cfg
  local period = math.floor((now - c.start) / c.period_seconds)
  if period > B.period then
    B.period = period
    B.spent = 0.0
    B.last_committed = B.expected
    B.last_time = nil
  end
end
local function planned(now)
  local c = B.cfg
  local frac = ((now - c.start) / c.period_seconds) - B.period
  if frac < 0 then frac = 0.0 elseif frac > 1 then frac = 1.0 end
  local cum = c.cum_plan
  local slices = #cum - 1
  local pos = frac * slices
  local i = math.floor(pos)
  if i > slices - 1 then i = slices - 1 end
  local share = cum[i + 1] + (pos - i) * (cum[i + 2] - cum[i + 1])
  return c.amount * share
end
local function bupdate(now)
  local c = B.cfg
  B.since = 0
  local committed = B.spent + B.expected
  local pl = planned(now)
  if B.last_time ~= nil then
    local dc = committed - B.last_committed
    local dp = pl - planned(B.last_time)
    if dp > 0 then
      local err = (dc - dp) / dp
      local lam = B.lam + c.step_size * err
      if lam < 0 then lam = 0.0 end
      if lam > c.lambda_max then lam = c.lambda_max end
      B.lam = lam
    end
  end
  B.last_time = now
  B.last_committed = committed
end

if cmd == 'sync' then
  -- KEYS: policy, updates list, stats. ARGV: cmd, n folded, first entry, delta (f64 LE).
  -- Adds the delta of the first n updates of the list to the merged statistics and drops
  -- them from the list, unless the list no longer starts with that entry (another
  -- worker folded it already): then nothing changes. Returns the merged statistics.
  local n = tonumber(ARGV[2])
  if n > 0 then
    if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[3] then return {'stale'} end
    local g = redis.call('GET', KEYS[1])
    local d = ARGV[4]
    local m = #d / 8
    local out = {}
    for i = 0, m - 1 do
      local x = struct.unpack('<d', d, i * 8 + 1)
      local y = struct.unpack('<d', g, i * 8 + 1)
      out[i + 1] = struct.pack('<d', y + x)
    end
    redis.call('SET', KEYS[1], table.concat(out))
    redis.call('LTRIM', KEYS[2], n, -1)
    redis.call('HINCRBY', KEYS[3], 'policy_updates', n)
  end
  return {'ok', redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[3])}
end

if cmd == 'apply' then
  -- ARGV: cmd, budget cfg JSON, {guards, ops} JSON, payloads...; keys and payloads are
  -- referred to by their index in KEYS / ARGV.
  local cfg = cjson.decode(ARGV[2])
  local spec = cjson.decode(ARGV[3])
  for _, g in ipairs(spec.guards) do
    local kind = g[1]
    local k = KEYS[g[2]]
    if kind == 'lease' then
      if redis.call('GET', k) ~= ARGV[g[3]] then return {'lease_lost', g[2]} end
    elseif kind == 'exists' then
      if redis.call('EXISTS', k) == 0 then return {'gone', g[2]} end
    elseif kind == 'absent' then
      local v = redis.call('GET', k)
      if v then return {'exists', v} end
    elseif kind == 'same' then
      -- the key still holds what the worker read (absent: ''): compare-and-set
      local v = redis.call('GET', k)
      if not v then v = '' end
      if v ~= ARGV[g[3]] then return {'changed', g[2]} end
    elseif kind == 'budget_fits' then
      -- [kind, budget, max_cost, now]: the decision's worst case still fits (it was
      -- chosen from a read of the budget; another worker may have reserved since)
      if B == nil then bload(k, cfg) end
      broll(g[4])
      if g[3] > 0 then
        if B.spent + B.expected > planned(g[4]) + cfg.ahead_band * cfg.amount then
          return {'budget', g[2]}
        end
        if g[3] > cfg.amount - B.spent - B.reserved + 1e-9 then return {'budget', g[2]} end
      end
    elseif kind == 'caps_fits' then
      -- [kind, caps key, day, period, discounted (0/1), max_cost, max offers a day (-1:
      -- none), max discount a period (-1: none)]: UserCaps.mask for the chosen offer
      local d = hnum(k, 'd', nil)
      local cnt, s = 0.0, 0.0
      if d ~= nil then
        if d == g[3] then cnt = hnum(k, 'o', 0) end
        if hnum(k, 'p', 0) == g[4] then s = hnum(k, 's', 0) end
      end
      if g[5] == 1 and g[7] >= 0 and cnt >= g[7] then return {'caps', g[2]} end
      if g[8] >= 0 and g[6] > 0 and s + g[6] > g[8] + 1e-9 then return {'caps', g[2]} end
    end
  end
  for _, o in ipairs(spec.ops) do
    local op = o[1]
    if op == 'set' then
      if o[4] > 0 then redis.call('SET', KEYS[o[2]], ARGV[o[3]], 'PX', o[4])
      else redis.call('SET', KEYS[o[2]], ARGV[o[3]]) end
    elseif op == 'del' then redis.call('DEL', KEYS[o[2]])
    elseif op == 'zadd' then redis.call('ZADD', KEYS[o[2]], ARGV[o[3]], ARGV[o[4]])
    elseif op == 'zrem' then redis.call('ZREM', KEYS[o[2]], ARGV[o[3]])
    elseif op == 'hincrby' then redis.call('HINCRBY', KEYS[o[2]], ARGV[o[3]], o[4])
    elseif op == 'rpush' then redis.call('RPUSH', KEYS[o[2]], ARGV[o[3]])
    elseif op == 'commit' then
      -- [op, budget, max_cost, expected_cost, now] (after a budget_fits guard)
      if B == nil then bload(KEYS[o[2]], cfg) end
      broll(o[5])
      B.reserved = B.reserved + o[3]
      B.expected = B.expected + o[4]
      B.since = B.since + 1
      if B.since >= cfg.update_every then bupdate(o[5]) end
    elseif op == 'settle' then
      -- [op, budget, now, max_cost, expected_cost, actual]
      if B == nil then bload(KEYS[o[2]], cfg) end
      broll(o[3])
      local r = B.reserved - o[4]
      if r < 0 then r = 0.0 end
      local e = B.expected - o[5]
      if e < 0 then e = 0.0 end
      B.reserved = r
      B.expected = e
      B.spent = B.spent + o[6]
    elseif op == 'book' then
      if B == nil then bload(KEYS[o[2]], cfg) end
      broll(o[3])
      B.spent = B.spent + o[4]
    elseif op == 'caps' then
      -- [op, caps key, day, period, offers, cost, ttl ms]: UserCaps._row, then add
      local k = KEYS[o[2]]
      local d = hnum(k, 'd', nil)
      local cnt, p, s
      if d == nil then d = o[3]; cnt = 0.0; p = o[4]; s = 0.0
      else
        cnt = hnum(k, 'o', 0); p = hnum(k, 'p', 0); s = hnum(k, 's', 0)
        if d ~= o[3] then d = o[3]; cnt = 0.0 end
        if p ~= o[4] then p = o[4]; s = 0.0 end
      end
      redis.call('HSET', k, 'd', fmt(d), 'o', fmt(cnt + o[5]), 'p', fmt(p), 's', fmt(s + o[6]))
      redis.call('PEXPIRE', k, o[7])
    end
  end
  if B ~= nil then bsave() end
  return {'ok'}
end
return redis.error_reply('promobandit: unknown command ' .. tostring(cmd))
"""


def fmt_float(x: float) -> str:
    """A float as the script writes it (round-trips exactly)."""
    return repr(float(x))


# --- pending decisions: one record as bytes (the engine's column codec, one row) --------
_HEADER = struct.Struct("<I")


def encode_pending(rec: PendingDecision, n_offers: int) -> bytes:
    """One pending decision as bytes: the header length, the JSON header of
    ``PendingStore.to_columns`` with each array's dtype and shape, then the arrays' raw
    bytes in that order (no pickle: Redis's content is never executed)."""
    meta, arrays = PendingStore([rec]).to_columns(n_offers)
    specs = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    head = orjson.dumps({"meta": meta, "arrays": specs})
    return _HEADER.pack(len(head)) + head + b"".join(
        np.ascontiguousarray(a).tobytes() for a in arrays.values())


def decode_pending(data: bytes) -> PendingDecision:
    """The pending decision encode_pending wrote (ValueError if it is not one)."""
    try:
        (n,) = _HEADER.unpack_from(data)
        head = orjson.loads(data[_HEADER.size:_HEADER.size + n])
        pos = _HEADER.size + n
        arrays = {}
        for name, dtype, shape in head["arrays"]:
            dt = np.dtype(dtype)
            count = math.prod(shape)  # 1 for a scalar's shape ()
            arrays[name] = np.frombuffer(data, dt, count, pos).reshape(shape).copy()
            pos += count * dt.itemsize
        (rec,) = list(PendingStore.from_columns(head["meta"], arrays))
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"pending decision: unreadable record in Redis ({exc})") from exc
    return rec


# --- policy statistics ------------------------------------------------------------------
# The arrays of each policy family that are sums of observations (what Policy.merge adds);
# the others (inverses, weights, propensity caches) are derived from them.
_STAT_ARRAYS = ("stats", "A", "b", "n")


def policy_stat_names(arrays: dict[str, np.ndarray]) -> list[str]:
    """The statistics arrays of a policy's state arrays, in a fixed order."""
    return [name for name in _STAT_ARRAYS if name in arrays]


def pack_stats(arrays: dict[str, np.ndarray], names: list[str]) -> bytes:
    """The named arrays as one little-endian float64 vector."""
    if not names:
        return b""
    return np.concatenate([np.asarray(arrays[n], dtype="<f8").ravel() for n in names]).tobytes()


def unpack_stats(data: bytes, like: dict[str, np.ndarray], names: list[str]
                 ) -> dict[str, np.ndarray]:
    """The arrays pack_stats wrote, shaped and typed as ``like``'s."""
    flat = np.frombuffer(data, dtype="<f8")
    want = sum(like[n].size for n in names)
    if flat.size != want:
        raise ValueError(f"policy statistics in Redis: {flat.size} numbers, this policy has "
                         f"{want} (another policy configuration wrote them)")
    out, pos = {}, 0
    for n in names:
        a = like[n]
        out[n] = flat[pos:pos + a.size].reshape(a.shape).astype(a.dtype)
        pos += a.size
    return out


def encode_update(decision_id: str, arm: int, reward: float, context: Any) -> bytes:
    """One policy update as a list entry: the decision id (which makes every entry
    unique), then arm, reward and the context as float64."""
    did = decision_id.encode()
    ctx = np.zeros(0) if context is None else np.asarray(context, dtype=np.float64).ravel()
    return (bytes([len(did)]) + did
            + np.concatenate([[float(arm), float(reward)], ctx]).astype("<f8").tobytes())


def decode_update(entry: bytes) -> tuple[str, int, float, np.ndarray | None]:
    """(decision id, arm, reward, context or None) of an encode_update entry."""
    n = entry[0]
    did = entry[1:1 + n].decode()
    v = np.frombuffer(entry, dtype="<f8", offset=1 + n)
    return did, int(v[0]), float(v[1]), (v[2:].copy() if v.size > 2 else None)


def decision_json(d: Any) -> bytes:
    """The fields of an engine Decision an idempotent retry answers with."""
    return orjson.dumps({"id": d.id, "user": d.user, "group": d.group, "offer": d.offer,
                         "offer_id": d.offer_id, "propensity": d.propensity,
                         "policy_version": d.policy_version, "created_at": d.created_at,
                         "price": d.price, "discount_cost": d.discount_cost},
                        option=orjson.OPT_SERIALIZE_NUMPY)


__all__ = ["FINALISED_KEEP_MIN_SECONDS", "FINALISED_KEEP_WAITS", "SCRIPT", "decision_json",
           "decode_pending", "decode_update", "encode_pending", "encode_update",
           "pack_stats", "policy_stat_names", "unpack_stats"]
