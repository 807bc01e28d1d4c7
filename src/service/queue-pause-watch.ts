import type { Queue } from 'bullmq';
import type { Logger } from '../log/logger.js';

export interface QueuePauseChange {
  queue: string;
  paused: boolean;
  /** The first look, at start: a pause found then survived a restart (it is a key in Redis). */
  atStart: boolean;
}

export type QueuePauseListener = (change: QueuePauseChange) => void;

/**
 * A queue paused from the dashboard or `grantkeeper queue pause` runs nothing and says nothing:
 * this looks at start and then on an interval (one Redis call), and logs one line for each change.
 * Listeners (alerts, readiness) hear every change, the first look included.
 */
export class QueuePauseWatch {
  private state: boolean | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A look waits while Redis is away: the next ones skip rather than pile up behind it. */
  private looking = false;
  private readonly listeners = new Set<QueuePauseListener>();

  constructor(
    private readonly queue: Pick<Queue, 'name' | 'isPaused'>,
    private readonly logger: Logger,
    private readonly intervalMs: number,
  ) {}

  /** Undefined until the first look answered. */
  get paused(): boolean | undefined {
    return this.state;
  }

  /** Returns the unsubscribe function. */
  onChange(listener: QueuePauseListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Looks once now, then every interval; a look Redis cannot answer is skipped (its outage is logged elsewhere). */
  async start(): Promise<void> {
    await this.look();
    this.timer = setInterval(() => void this.look(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async look(): Promise<void> {
    if (this.looking) return;
    this.looking = true;
    try {
      await this.check();
    } catch {
      // Redis did not answer; the next look tries again.
    } finally {
      this.looking = false;
    }
  }

  async check(): Promise<void> {
    const paused = await this.queue.isPaused();
    if (paused === this.state) return;
    const atStart = this.state === undefined;
    this.state = paused;
    const queue = this.queue.name;
    if (paused) {
      this.logger.error(
        { queue },
        atStart
          ? `the ${queue} queue is paused (a pause outlives restarts): none of its jobs run until it is resumed with grantkeeper queue resume or the dashboard`
          : `the ${queue} queue was paused: none of its jobs run until it is resumed with grantkeeper queue resume or the dashboard`,
      );
    } else if (!atStart) {
      this.logger.info({ queue }, `the ${queue} queue was resumed`);
    }
    for (const listener of this.listeners) {
      try {
        listener({ queue, paused, atStart });
      } catch (err) {
        this.logger.warn(
          { queue, err: { message: (err as Error).message } },
          'a queue pause listener failed',
        );
      }
    }
  }
}
