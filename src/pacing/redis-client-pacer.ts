import { createHash } from 'node:crypto';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { Admission, ClientCondition, ClientPacer, PaceTransition, Reservation } from './client-pacer.js';
import {
  BREAKER_BASE_PAUSE_MS,
  BREAKER_FAILURES,
  BREAKER_MAX_PAUSE_MS,
  BREAKER_WINDOW_MS,
  type PaceOutcome,
  PROBE_WAIT_MS,
  RESUME_SPREAD_MS,
} from './pace-policy.js';
import { gcraParams, type RateLimit } from './rate-limit.js';

/**
 * One hash per client, `<prefix>:pace:<clientRef>` (the hash-tagged queue prefix keeps it in the
 * queue's Cluster slot): `tat` (GCRA's theoretical arrival time), `until` (paused before this),
 * `state`/`since`/`reason`/`openings` while degraded, `probeExp` while a probe is out, `fails`
 * (`grant@time` of recent transient failures, one per grant: a grant retrying alone is no burst). Every decision is one script on Redis's clock, so replicas agree.
 */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const ADMIT = `${NOW}
local key = KEYS[1]
local v = redis.call('HMGET', key, 'until', 'state', 'probeExp')
local pausedUntil = tonumber(v[1]) or 0
if now < pausedUntil then return {1, pausedUntil} end
if v[2] == 'degraded' then
  local probeExp = tonumber(v[3]) or 0
  if now < probeExp then return {2, now} end
  redis.call('HSET', key, 'probeExp', now + tonumber(ARGV[1]))
  return {0, 1}
end
return {0, 0}`;

const RESERVE = `${NOW}
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('HGET', key, 'tat')) or 0
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
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
local degraded = v[1] == 'degraded'
local kind, probe = ARGV[1], ARGV[3] == '1'
if kind == 'answered' then
  if degraded and probe then
    redis.call('HDEL', key, 'state', 'since', 'reason', 'until', 'openings', 'probeExp', 'fails')
    redis.call('PEXPIRE', key, 3600000)
    return {'recovered'}
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
  if not degraded then
    redis.call('HSET', key, 'state', 'degraded', 'since', now, 'reason', 'throttled', 'openings', 1)
    return {'degraded', 'throttled'}
  end
  return {}
end
if degraded then
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
  redis.call('HDEL', key, 'fails', 'probeExp')
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

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisClientPacerOptions,
  ) {
    this.#maxInlineWaitMs = options.maxInlineWaitMs ?? 1000;
    this.#random = options.random ?? Math.random;
    this.#breaker = options.breaker ?? DEFAULT_BREAKER;
  }

  #key(clientRef: string): string {
    return `${this.options.prefix}:pace:${clientRef}`;
  }

  async admit(clientRef: string): Promise<Admission> {
    const [code, at] = (await admitScript.run(this.redis, this.#key(clientRef), [
      this.options.probeTtlMs,
    ])) as [number, number];
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
  ): Promise<PaceTransition | undefined> {
    const [kind, reason] = (await reportScript.run(this.redis, this.#key(clientRef), [
      outcome.kind,
      outcome.kind === 'throttled' ? outcome.pauseMs : 0,
      probe ? 1 : 0,
      this.#breaker.failures,
      this.#breaker.windowMs,
      this.#breaker.basePauseMs,
      this.#breaker.maxPauseMs,
      grantId,
    ])) as [string?, string?];
    if (kind === 'recovered') return { kind: 'recovered' };
    if (kind === 'degraded')
      return { kind: 'degraded', reason: reason === 'failures' ? 'failures' : 'throttled' };
    return undefined;
  }

  async condition(clientRef: string): Promise<ClientCondition> {
    const [state, since, until, reason] = await this.redis.hmget(
      this.#key(clientRef),
      'state',
      'since',
      'until',
      'reason',
    );
    if (state !== 'degraded') return { state: 'ok' };
    return {
      state: 'degraded',
      ...(since ? { since: Number(since) } : {}),
      ...(until ? { pausedUntil: Number(until) } : {}),
      reason: reason === 'failures' ? 'failures' : 'throttled',
    };
  }
}
