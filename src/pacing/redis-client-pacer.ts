import { createHash } from 'node:crypto';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type {
  Admission,
  AdmitRequest,
  ClientCondition,
  ClientPacer,
  PaceTransition,
  Reservation,
} from './client-pacer.js';
import {
  BREAKER_BASE_PAUSE_MS,
  BREAKER_FAILURES,
  BREAKER_MAX_PAUSE_MS,
  BREAKER_WINDOW_MS,
  FAILING_BASE_PAUSE_MS,
  FAILING_MAX_PAUSE_MS,
  type PaceOutcome,
  PROBE_WAIT_MS,
  RAMP_MS,
  RAMP_START_FRACTION,
  RESUME_SPREAD_MS,
} from './pace-policy.js';
import { gcraParams, type RateLimit } from './rate-limit.js';

/**
 * One hash per client, `<prefix>:pace:<clientRef>` (the hash-tagged queue prefix keeps it in the
 * queue's Cluster slot): `tat` (GCRA's theoretical arrival time), `until` (paused before this),
 * `state` (`degraded` or `failing`) with `since`/`reason`/`openings` while impaired, `code`/`rev`
 * (the refused error and the client revision it was refused at) while failing, `probeExp` while a
 * probe is out, `fails` (`grant@time` of recent transient failures, one per grant: a grant retrying
 * alone is no burst), `ramp` (when the last recovery began the rate's ramp). Every decision is one
 * script on Redis's clock, so replicas agree.
 */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// A failing client turns a request away as refused until its next probe is due, unless an operator
// asks or the client changed since it was refused: then that request may be the probe.
const ADMIT = `${NOW}
local key = KEYS[1]
local v = redis.call('HMGET', key, 'until', 'state', 'probeExp', 'rev', 'since', 'code')
local pausedUntil = tonumber(v[1]) or 0
local state = v[2]
if state == 'failing' then
  if now < pausedUntil and ARGV[2] ~= '1' and v[4] == ARGV[3] then
    return {3, pausedUntil, tonumber(v[5]) or now, v[6] or 'invalid_client'}
  end
elseif now < pausedUntil then
  return {1, pausedUntil}
end
if state == 'degraded' or state == 'failing' then
  local probeExp = tonumber(v[3]) or 0
  if now < probeExp then return {2, now} end
  redis.call('HSET', key, 'probeExp', now + tonumber(ARGV[1]))
  return {0, 1}
end
return {0, 0}`;

// While the last recovery's ramp runs, the interval is stretched to the ramp's fraction of the rate
// and no burst is allowed.
const RESERVE = `${NOW}
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local v = redis.call('HMGET', key, 'tat', 'ramp')
local tat = tonumber(v[1]) or 0
local ramp = tonumber(v[2])
if ramp then
  local elapsed = now - ramp
  local rampMs = tonumber(ARGV[4])
  if elapsed < rampMs then
    local from = tonumber(ARGV[5])
    interval = interval / (from + (1 - from) * math.max(0, elapsed) / rampMs)
    tolerance = 0
  else
    redis.call('HDEL', key, 'ramp')
  end
end
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > tonumber(ARGV[3]) then return {1, now + math.ceil(wait)} end
redis.call('HSET', key, 'tat', string.format('%.3f', tat + interval))
if redis.call('PTTL', key) >= 0 then
  redis.call('PEXPIRE', key, math.ceil(tat + interval - now) + 60000)
end
if wait < 0 then wait = 0 end
return {0, math.ceil(wait)}`;

const REPORT = `${NOW}
local key = KEYS[1]
local v = redis.call('HMGET', key, 'state', 'until', 'openings', 'fails')
local state = v[1]
local impaired = state == 'degraded' or state == 'failing'
local kind, probe = ARGV[1], ARGV[3] == '1'
if kind == 'answered' then
  if impaired and probe then
    redis.call('HDEL', key, 'state', 'since', 'reason', 'until', 'openings', 'probeExp', 'fails', 'code', 'rev')
    redis.call('HSET', key, 'ramp', now)
    redis.call('PEXPIRE', key, 3600000)
    return {'recovered', state}
  end
  return {}
end
if kind == 'refused' then
  if state ~= 'failing' then
    redis.call('HSET', key, 'state', 'failing', 'since', now, 'reason', 'client_error', 'code', ARGV[9],
      'rev', ARGV[10], 'openings', 1, 'until', now + tonumber(ARGV[11]))
    redis.call('HDEL', key, 'probeExp', 'fails', 'ramp')
    redis.call('PERSIST', key)
    return {'failing', ARGV[9]}
  end
  if probe then
    local openings = (tonumber(v[3]) or 1) + 1
    local pause = math.min(tonumber(ARGV[12]), tonumber(ARGV[11]) * 2 ^ (openings - 1))
    redis.call('HSET', key, 'openings', openings, 'until', now + pause, 'code', ARGV[9], 'rev', ARGV[10])
    redis.call('HDEL', key, 'probeExp')
  end
  return {}
end
if kind == 'throttled' then
  local untilv = now + tonumber(ARGV[2])
  local current = tonumber(v[2]) or 0
  if untilv < current then untilv = current end
  redis.call('HSET', key, 'until', untilv)
  redis.call('HDEL', key, 'probeExp')
  redis.call('PERSIST', key)
  if not impaired then
    redis.call('HSET', key, 'state', 'degraded', 'since', now, 'reason', 'throttled', 'openings', 1)
    redis.call('HDEL', key, 'ramp')
    return {'degraded', 'throttled'}
  end
  return {}
end
if impaired then
  if probe then
    local openings = (tonumber(v[3]) or 1) + 1
    local pause = math.min(tonumber(ARGV[7]), tonumber(ARGV[6]) * 2 ^ (openings - 1))
    redis.call('HSET', key, 'openings', openings, 'until', now + pause)
    redis.call('HDEL', key, 'probeExp')
  end
  return {}
end
local window = tonumber(ARGV[5])
local grant = ARGV[8]
local kept, grants, distinct = {}, {}, 0
for entry in string.gmatch(v[4] or '', '[^,]+') do
  local id, ts = string.match(entry, '^(.*)@(%d+)$')
  if id and id ~= grant and tonumber(ts) > now - window then
    kept[#kept + 1] = entry
    if not grants[id] then grants[id] = true; distinct = distinct + 1 end
  end
end
kept[#kept + 1] = grant .. '@' .. now
distinct = distinct + 1
if distinct >= tonumber(ARGV[4]) then
  redis.call('HSET', key, 'state', 'degraded', 'since', now, 'reason', 'failures', 'openings', 1,
    'until', now + tonumber(ARGV[6]))
  redis.call('HDEL', key, 'fails', 'probeExp', 'ramp')
  redis.call('PERSIST', key)
  return {'degraded', 'failures'}
end
redis.call('HSET', key, 'fails', table.concat(kept, ','))
if redis.call('PTTL', key) < window + 60000 then redis.call('PEXPIRE', key, window + 60000) end
return {}`;

/** A script run by its SHA, sent whole only when Redis does not hold it yet (after a restart). */
class Script {
  readonly #sha: string;
  constructor(readonly source: string) {
    this.#sha = createHash('sha1').update(source).digest('hex');
  }
  async run(redis: RedisClient, key: string, args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.#sha, 1, key, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.source, 1, key, ...args);
    }
  }
}

const admitScript = new Script(ADMIT);
const reserveScript = new Script(RESERVE);
const reportScript = new Script(REPORT);

export interface RedisClientPacerOptions {
  prefix: string;
  /** A probe not reported within this long is presumed lost, and another may go (a request timeout and then some). */
  probeTtlMs: number;
  /** A rate-limit wait up to this long is waited out holding the job; a longer one delays the job. */
  maxInlineWaitMs?: number;
  /** The breaker's numbers (pace-policy.ts defaults). */
  breaker?: BreakerSettings;
  /** A failing client's probe pauses (pace-policy.ts defaults). */
  failing?: { basePauseMs: number; maxPauseMs: number };
  /** The ramp back after a recovery (pace-policy.ts defaults). */
  ramp?: { ms: number; startFraction: number };
  random?: () => number;
}

export interface BreakerSettings {
  failures: number;
  windowMs: number;
  basePauseMs: number;
  maxPauseMs: number;
}

const DEFAULT_BREAKER: BreakerSettings = {
  failures: BREAKER_FAILURES,
  windowMs: BREAKER_WINDOW_MS,
  basePauseMs: BREAKER_BASE_PAUSE_MS,
  maxPauseMs: BREAKER_MAX_PAUSE_MS,
};

export class RedisClientPacer implements ClientPacer {
  readonly #maxInlineWaitMs: number;
  readonly #random: () => number;
  readonly #breaker: BreakerSettings;
  readonly #failing: { basePauseMs: number; maxPauseMs: number };
  readonly #ramp: { ms: number; startFraction: number };

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisClientPacerOptions,
  ) {
    this.#maxInlineWaitMs = options.maxInlineWaitMs ?? 1000;
    this.#random = options.random ?? Math.random;
    this.#breaker = options.breaker ?? DEFAULT_BREAKER;
    this.#failing = options.failing ?? {
      basePauseMs: FAILING_BASE_PAUSE_MS,
      maxPauseMs: FAILING_MAX_PAUSE_MS,
    };
    this.#ramp = options.ramp ?? { ms: RAMP_MS, startFraction: RAMP_START_FRACTION };
  }

  #key(clientRef: string): string {
    return `${this.options.prefix}:pace:${clientRef}`;
  }

  async admit(clientRef: string, request: AdmitRequest): Promise<Admission> {
    const [code, at, since, refused] = (await admitScript.run(this.redis, this.#key(clientRef), [
      this.options.probeTtlMs,
      request.operator ? 1 : 0,
      request.revision,
    ])) as [number, number, number?, string?];
    switch (code) {
      case 0:
        return { kind: 'go', probe: at === 1 };
      case 1:
        // Spread over a window after the pause, so the provider sees a ramp and the probe goes first.
        return {
          kind: 'later',
          retryAt: at + Math.round(this.#random() * RESUME_SPREAD_MS),
          reason: 'paused',
        };
      case 3:
        return { kind: 'refused', since: since ?? at, code: refused ?? 'invalid_client', retryAt: at };
      default:
        return {
          kind: 'later',
          retryAt: at + PROBE_WAIT_MS + Math.round(this.#random() * RESUME_SPREAD_MS),
          reason: 'probing',
        };
    }
  }

  async reserve(clientRef: string, limit: RateLimit): Promise<Reservation> {
    const { intervalMs, toleranceMs } = gcraParams(limit);
    const [code, at] = (await reserveScript.run(this.redis, this.#key(clientRef), [
      intervalMs,
      toleranceMs,
      this.#maxInlineWaitMs,
      this.#ramp.ms,
      this.#ramp.startFraction,
    ])) as [number, number];
    return code === 0
      ? { kind: 'go', waitMs: at }
      : { kind: 'later', retryAt: at + Math.round(this.#random() * intervalMs), reason: 'rate' };
  }

  async report(
    clientRef: string,
    grantId: string,
    outcome: PaceOutcome,
    probe: boolean,
    revision = 0,
  ): Promise<PaceTransition | undefined> {
    const [kind, detail] = (await reportScript.run(this.redis, this.#key(clientRef), [
      outcome.kind,
      outcome.kind === 'throttled' ? outcome.pauseMs : 0,
      probe ? 1 : 0,
      this.#breaker.failures,
      this.#breaker.windowMs,
      this.#breaker.basePauseMs,
      this.#breaker.maxPauseMs,
      grantId,
      outcome.kind === 'refused' ? outcome.code : '',
      revision,
      this.#failing.basePauseMs,
      this.#failing.maxPauseMs,
    ])) as [string?, string?];
    switch (kind) {
      case 'recovered':
        return { kind: 'recovered', from: detail === 'failing' ? 'failing' : 'degraded' };
      case 'degraded':
        return { kind: 'degraded', reason: detail === 'failures' ? 'failures' : 'throttled' };
      case 'failing':
        return { kind: 'failing', code: detail ?? '' };
      default:
        return undefined;
    }
  }

  async condition(clientRef: string): Promise<ClientCondition> {
    const [state, since, until, reason, code, ramp] = await this.redis.hmget(
      this.#key(clientRef),
      'state',
      'since',
      'until',
      'reason',
      'code',
      'ramp',
    );
    if (state !== 'degraded' && state !== 'failing') {
      // Redis's clock decides the ramp; this one only says whether it is still running.
      const rampUntil = ramp ? Number(ramp) + this.#ramp.ms : 0;
      return rampUntil > Date.now() ? { state: 'ok', rampUntil } : { state: 'ok' };
    }
    return {
      state,
      ...(since ? { since: Number(since) } : {}),
      ...(until ? { pausedUntil: Number(until) } : {}),
      ...(state === 'failing'
        ? { reason: 'client_error', code: code ?? 'invalid_client' }
        : { reason: reason === 'failures' ? 'failures' : 'throttled' }),
    };
  }
}
