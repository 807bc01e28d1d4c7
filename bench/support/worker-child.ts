/**
 * The process a refresh workload runs in, one fresh process per run so that peak RSS and CPU
 * profiles belong to that workload alone. Modes:
 * - grantkeeper: the real refresh service (startRefreshService) on a seeded db (SQLite in the data
 *   folder, or PostgreSQL when `databaseUrl` is given), until `expected` refreshes have been
 *   settled or the parent sends { type: 'stop' } (several workers sharing one db);
 * - bare-bullmq: the floor of this stack, a BullMQ worker doing one undici POST per job;
 * - raw-undici: the limit, POSTs to the token endpoint at the same concurrency and nothing else.
 * Protocol: parent sends { type: 'run', ...RunRequest }; child sends 'progress' messages and one
 * 'result', then exits. A grantkeeper run also ends early on { type: 'stop' }.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { Agent, request } from 'undici';
import { configSchema } from '../../src/config/config-schema.js';
import { createLogger } from '../../src/log/logger.js';
import type { RefreshObserver } from '../../src/refresh/refresh-observer.js';
import { startRefreshService } from '../../src/service/refresh-service.js';
import { childMain } from './processes.js';

export type RunRequest =
  | {
      mode: 'grantkeeper';
      dataDir: string;
      /** The seeded PostgreSQL database; unset: the SQLite store in `dataDir`. */
      databaseUrl?: string;
      key: string;
      redisUrl: string;
      concurrency: number;
      expected: number;
      /** Send back when each grant's refresh started (after its claim), for lateness. */
      reportStarts: boolean;
      /**
       * `settled` (default): done once `expected` outcomes of any kind; `refreshed`: once `expected`
       * grants refreshed (a storm's failed and paced attempts come first).
       */
      finishOn?: 'settled' | 'refreshed';
    }
  | {
      mode: 'bare-bullmq';
      redisUrl: string;
      tokenEndpoint: string;
      concurrency: number;
      /** One job per entry, due at that time (0: due now). */
      plannedAt: number[];
      reportStarts: boolean;
      /** Retries of a failed POST with BullMQ's own exponential backoff; unset: none. */
      retry?: { attempts: number; delayMs: number };
    }
  | { mode: 'raw-undici'; tokenEndpoint: string; concurrency: number; count: number };

export interface RunResult {
  type: 'result';
  /** When the workload was started: service start, worker start or first request. */
  startedAt: number;
  /** First claim (grantkeeper) or first job start (bare) or first request. */
  firstStart: number;
  /** Last commit (grantkeeper) or last job completion or last response. */
  lastEnd: number;
  completed: number;
  /** Jobs BullMQ found stalled (a lock not renewed in time): a sign the worker was starved. */
  stalls: number;
  /** Outcomes other than a committed refresh (grantkeeper only). */
  other: Record<string, number>;
  /** [index or grantId, start] pairs when asked for. */
  starts?: Array<[string | number, number]>;
  rssAtStartBytes: number;
  maxRssBytes: number;
  /** The largest V8 heap in use at any progress tick. */
  maxHeapUsedBytes: number;
  /** [ms since start, RSS, V8 heap total, heap used, external + array buffers] in MiB, once a second. */
  memory: Array<[number, number, number, number, number]>;
}

const PROGRESS_MS = 250;
const BARE_QUEUE = 'bare';

/**
 * Reports progress every PROGRESS_MS (`done`: refreshes completed; `settled` (grantkeeper): every
 * outcome, failures included) and samples memory as it does; `stop` ends both and returns the
 * samples.
 */
function reportProgress(done: () => number, settled: () => number = done, stalls: () => number = () => 0) {
  const began = Date.now();
  const memory: RunResult['memory'] = [];
  let maxHeapUsedBytes = 0;
  let ticks = 0;
  const sample = (keep: boolean) => {
    const m = process.memoryUsage();
    maxHeapUsedBytes = Math.max(maxHeapUsedBytes, m.heapUsed);
    const mib = (n: number) => Math.round(n / 2 ** 20);
    if (keep) {
      const external = m.external + m.arrayBuffers;
      memory.push([Date.now() - began, mib(m.rss), mib(m.heapTotal), mib(m.heapUsed), mib(external)]);
    }
  };
  const timer = setInterval(() => {
    process.send?.({ type: 'progress', done: done(), settled: settled(), stalls: stalls() });
    sample(ticks++ % 4 === 0);
  }, PROGRESS_MS);
  return {
    stop: () => {
      clearInterval(timer);
      // The last moment is sampled too: a run shorter than a tick has one sample.
      sample(true);
      return { memory, maxHeapUsedBytes };
    },
  };
}

/** A promise the run awaits, with its resolve and reject handed out. */
function runEnd() {
  let finish: () => void = () => {};
  let fail: (err: Error) => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return { finished, finish, fail };
}

/** What a queue workload counts as it runs, and the result fields it makes of them. */
class Tally {
  readonly rssAtStartBytes = process.memoryUsage.rss();
  /** Set when the service or worker is started, after any setup of the run. */
  startedAt = 0;
  firstStart = Number.POSITIVE_INFINITY;
  lastEnd = 0;
  completed = 0;
  readonly #starts: Array<[string | number, number]> = [];

  constructor(private readonly reportStarts: boolean) {}

  /** One refresh or job started at `at`. */
  started(id: string | number, at: number): void {
    if (at < this.firstStart) this.firstStart = at;
    if (this.reportStarts) this.#starts.push([id, at]);
  }

  fields(stalls: number, other: Record<string, number>) {
    const { startedAt, firstStart, lastEnd, completed, rssAtStartBytes } = this;
    return {
      startedAt,
      firstStart,
      lastEnd,
      completed,
      stalls,
      other,
      ...(this.reportStarts ? { starts: this.#starts } : {}),
      rssAtStartBytes,
    };
  }
}

/** Waits for the run's end, stops its progress, and builds its result from `fields` as they are then. */
async function resultWhen(
  finished: Promise<void>,
  progress: ReturnType<typeof reportProgress>,
  fields: () => Omit<RunResult, 'type' | 'maxRssBytes' | 'maxHeapUsedBytes' | 'memory'>,
): Promise<RunResult> {
  let sampled: ReturnType<typeof progress.stop>;
  try {
    await finished;
  } finally {
    sampled = progress.stop();
  }
  return { type: 'result', ...fields(), maxRssBytes: maxRss(), ...sampled };
}

/**
 * Counts the worker's stalled jobs, and ends the run with an error when BullMQ fails one for
 * stalling too often: with no reconciler in the bench, that grant would never settle and the run
 * would wait for it forever.
 */
function watchStalls(worker: Worker | undefined, fail: (err: Error) => void): () => number {
  let stalls = 0;
  worker?.on('stalled', () => {
    stalls += 1;
  });
  worker?.on('failed', (job, err) => {
    if (/stalled more than allowable limit/.test(err.message)) {
      fail(new Error(`job ${job?.id} failed after stalling ${stalls} times in this run: ${err.message}`));
    }
  });
  return () => stalls;
}

function maxRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** The form a refresh sends, with HTTP Basic client authentication. */
function tokenRequest(tokenEndpoint: string) {
  return {
    url: tokenEndpoint,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      authorization: `Basic ${Buffer.from('bench-client:bench-client-secret').toString('base64')}`,
    },
    body: 'grant_type=refresh_token&refresh_token=rt_bench',
  };
}

async function post(agent: Agent, req: ReturnType<typeof tokenRequest>): Promise<unknown> {
  const res = await request(req.url, {
    method: 'POST',
    headers: req.headers,
    body: req.body,
    dispatcher: agent,
  });
  const json = await res.body.json();
  if (res.statusCode !== 200) throw new Error(`token endpoint answered ${res.statusCode}`);
  return json;
}

async function runGrantkeeper(req: Extract<RunRequest, { mode: 'grantkeeper' }>): Promise<RunResult> {
  const tally = new Tally(req.reportStarts);
  // Production logs at info, one line per refresh; the bench pays that cost but discards the lines.
  const logger = createLogger({
    level: 'info',
    destination: pino.destination({ dest: '/dev/null', sync: false }),
  });
  const other: Record<string, number> = {};
  const { finished, finish, fail } = runEnd();
  const onStop = (m: unknown) => {
    if ((m as { type?: string }).type === 'stop') finish();
  };
  process.on('message', onStop);
  let settled = 0;
  const observer: RefreshObserver = {
    onRefreshResult(attempt, result) {
      const now = Date.now();
      tally.started(attempt.grantId, now - attempt.durationMs);
      tally.lastEnd = now;
      if (result.status === 'refreshed') tally.completed += 1;
      else other[result.status] = (other[result.status] ?? 0) + 1;
      settled += 1;
      if ((req.finishOn === 'refreshed' ? tally.completed : settled) >= req.expected) finish();
    },
  };
  let stalls = () => 0;
  const progress = reportProgress(
    () => tally.completed,
    () => settled,
    () => stalls(),
  );
  tally.startedAt = Date.now();
  const service = await startRefreshService(
    {
      config: configSchema.parse({
        dataDir: req.dataDir,
        ...(req.databaseUrl ? { databaseUrl: req.databaseUrl } : {}),
        redisUrl: req.redisUrl,
        concurrency: req.concurrency,
      }),
      secrets: { key: req.key },
    },
    logger,
    { env: {}, observers: [observer] },
  );
  stalls = watchStalls(service.worker, fail);
  const result = await resultWhen(finished, progress, () => tally.fields(stalls(), { ...other }));
  process.off('message', onStop);
  await service.stop();
  return result;
}

async function runBareBullmq(req: Extract<RunRequest, { mode: 'bare-bullmq' }>): Promise<RunResult> {
  const tally = new Tally(req.reportStarts);
  const connection = new Redis(req.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(BARE_QUEUE, { connection, prefix: 'bench-bare' });
  const now = Date.now();
  for (let i = 0; i < req.plannedAt.length; i += 5000) {
    await queue.addBulk(
      req.plannedAt.slice(i, i + 5000).map((planned, j) => ({
        name: 'refresh',
        data: { i: i + j, planned },
        // Completed jobs removed as grantkeeper's are, so both leave Redis equally clean.
        opts: {
          delay: Math.max(0, planned - now),
          removeOnComplete: true,
          ...(req.retry
            ? { attempts: req.retry.attempts, backoff: { type: 'exponential', delay: req.retry.delayMs } }
            : {}),
        },
      })),
    );
  }
  const agent = new Agent();
  const tokenReq = tokenRequest(req.tokenEndpoint);
  const { finished, finish, fail } = runEnd();
  let stalls = () => 0;
  // A failed attempt retried later is progress too: a storm's reference fails for a minute.
  let failedAttempts = 0;
  const progress = reportProgress(
    () => tally.completed,
    () => tally.completed + failedAttempts,
    () => stalls(),
  );
  tally.startedAt = Date.now();
  const worker = new Worker(
    BARE_QUEUE,
    async (job) => {
      tally.started(job.data.i, Date.now());
      await post(agent, tokenReq);
    },
    { connection, prefix: 'bench-bare', concurrency: req.concurrency },
  );
  worker.on('completed', () => {
    tally.completed += 1;
    tally.lastEnd = Date.now();
    if (tally.completed >= req.plannedAt.length) finish();
  });
  worker.on('failed', () => {
    failedAttempts += 1;
  });
  stalls = watchStalls(worker, fail);
  const result = await resultWhen(finished, progress, () =>
    tally.fields(stalls(), failedAttempts > 0 ? { failedAttempts } : {}),
  );
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await agent.close();
  connection.disconnect();
  return result;
}

async function runRawUndici(req: Extract<RunRequest, { mode: 'raw-undici' }>): Promise<RunResult> {
  const rssAtStartBytes = process.memoryUsage.rss();
  const agent = new Agent();
  const tokenReq = tokenRequest(req.tokenEndpoint);
  let issued = 0;
  let completed = 0;
  const progress = reportProgress(() => completed);
  const startedAt = Date.now();
  const lane = async () => {
    while (issued < req.count) {
      issued += 1;
      await post(agent, tokenReq);
      completed += 1;
    }
  };
  await Promise.all(Array.from({ length: req.concurrency }, lane));
  const lastEnd = Date.now();
  const sampled = progress.stop();
  await agent.close();
  return {
    type: 'result',
    startedAt,
    firstStart: startedAt,
    lastEnd,
    completed,
    stalls: 0,
    other: {},
    rssAtStartBytes,
    maxRssBytes: maxRss(),
    ...sampled,
  };
}

childMain(async () => {
  const req = await new Promise<RunRequest>((resolve) =>
    process.once('message', (m) => resolve(m as RunRequest & { type: 'run' })),
  );
  const result =
    req.mode === 'grantkeeper'
      ? await runGrantkeeper(req)
      : req.mode === 'bare-bullmq'
        ? await runBareBullmq(req)
        : await runRawUndici(req);
  process.send?.(result, () => process.disconnect());
});
