import type { Command } from 'commander';
import type { ClientView } from '../../api/schemas.js';
import { toClientView } from '../../api/views/client-view.js';
import { GRANT_STATES, type GrantState, isLive } from '../../grants/grant.js';
import { type AheadItem, aheadOf } from '../../policy/grant-horizon.js';
import { describeRedisEndpoint } from '../../redis/redis-endpoint.js';
import type { StorageGate } from '../../store/storage-gate.js';
import { type ManagedRedisOwner, withCliContext } from '../cli-context.js';
import {
  colorState,
  colors,
  examples,
  formatBytes,
  formatRelative,
  isoOrNull,
  printJson,
  printLine,
  renderFields,
} from '../output.js';

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description(
      'one-screen overview: grants by state, queue depth and pause, oldest failure, Redis and db health',
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper status',
        'grantkeeper status --json   # exits 1 while a grant needs an operator (needs_reconsent, client_error, broken),',
        '                            # the refresh queue is paused, Redis does not answer, the db or disk is unwell',
      ),
    )
    .action(async (opts: { json?: boolean }) => {
      await withCliContext(program, async ({ app, engine, redis }) => {
        const now = Date.now();
        const grants = await app.grants.list();
        const byState = Object.fromEntries(GRANT_STATES.map((s) => [s, 0])) as Record<GrantState, number>;
        for (const g of grants) byState[g.state]++;
        const oldest = grants
          .filter((g) => g.state !== 'active' && g.lastErrorAt !== null)
          .sort((a, b) => (a.lastErrorAt ?? 0) - (b.lastErrorAt ?? 0))[0];
        const nextDue = grants
          .filter((g) => isLive(g.state))
          .sort((a, b) => a.nextRefreshAt - b.nextRefreshAt)[0];
        const counts = engine.queue
          ? await engine.queue.getJobCounts('waiting', 'delayed', 'active', 'failed')
          : null;
        // A paused queue runs no refresh at all, and a pause outlives restarts.
        const paused = engine.queue ? await engine.queue.isPaused() : false;
        const dbCheck = await app.admin.check();
        const registered = await app.clients.list();
        const clients = await Promise.all(
          registered.map(async (c) => toClientView(c, await engine.pacer.condition(c.id))),
        );
        const ahead = aheadOf(
          await app.grants.listExpiring({
            before: now + AHEAD_MS,
            idleLimits: registered.map((c) => ({
              clientRef: c.id,
              limitMs: c.profile.refreshIdleLimitSec * 1000,
            })),
          }),
          registered,
          now,
          AHEAD_MS,
        );
        const impaired = clients.filter((c) => c.condition.state !== 'ok');
        // The disk under a SQLite file is ours to watch; PostgreSQL's is its operator's.
        const disk = app.admin.kind === 'sqlite' ? engine.storage.diskReport() : null;
        const status = {
          db: { kind: app.admin.kind, path: app.admin.location, ok: dbCheck.ok, check: dbCheck.detail },
          disk: disk && {
            free_bytes: disk.freeBytes,
            reserve_bytes: disk.reserveBytes,
            reserve_held_bytes: disk.reserveHeldBytes,
            low: disk.low,
          },
          redis: {
            state: redis.state,
            ...(redis.state === 'not_running' ? {} : { url: describeRedisEndpoint(redis.endpoint) }),
            ...(redis.state === 'unreachable' ? { error: redis.error } : {}),
            ...(redis.state !== 'not_running' && redis.owner ? { managed_by: redis.owner } : {}),
          },
          queue: counts ? { ...counts, paused } : null,
          clients,
          grants: { total: grants.length, ...byState },
          oldest_failure: oldest
            ? {
                label: oldest.label,
                state: oldest.state,
                at: isoOrNull(oldest.lastErrorAt),
                error: oldest.lastError,
              }
            : null,
          next_refresh: nextDue ? { label: nextDue.label, at: isoOrNull(nextDue.nextRefreshAt) } : null,
          /** What stops working within 30 days unless someone acts, soonest first. */
          ahead: ahead.map((a) => ({
            kind: a.kind,
            name: a.name,
            id: a.id,
            at: isoOrNull(a.at),
            reason: a.reason,
          })),
        };
        if (opts.json) printJson(status);
        else {
          const redisLine =
            redis.state === 'connected'
              ? colors.green(`connected (${status.redis.url})`) + ownerNote(redis.owner)
              : redis.state === 'unreachable'
                ? colors.red(`unreachable: ${redis.error}`) + ownerNote(redis.owner)
                : colors.yellow(
                    'not running (no REDIS_URL and no managed redis-server: start grantkeeper run)',
                  );
          printLine(
            renderFields([
              [
                'grants',
                `${grants.length} (${GRANT_STATES.map((s) => `${colorState(s)} ${byState[s]}`).join(', ')})`,
              ],
              [
                'next refresh',
                nextDue ? `${nextDue.label} ${formatRelative(nextDue.nextRefreshAt, now)}` : '-',
              ],
              [
                'oldest failure',
                oldest
                  ? `${oldest.label} (${oldest.state}) ${formatRelative(oldest.lastErrorAt, now)}: ${oldest.lastError}`
                  : '-',
              ],
              ['ahead (30 d)', aheadLine(ahead, now)],
              ['queue', counts ? queueLine(counts, paused) : '-'],
              ['clients', clientsLine(clients.length, impaired)],
              ['redis', redisLine],
              [
                'db',
                status.db.ok
                  ? colors.green(`ok (${app.admin.location})`)
                  : colors.red(`check failed: ${dbCheck.detail}`),
              ],
              ['disk', disk ? diskLine(disk) : '- (the store is PostgreSQL)'],
            ]),
          );
        }
        if (
          byState.needs_reconsent + byState.client_error + byState.broken > 0 ||
          !status.db.ok ||
          disk?.low ||
          redis.state === 'unreachable' ||
          paused
        ) {
          process.exitCode = 1;
        }
      });
    });
}

const AHEAD_MS = 30 * 86_400_000;
const AHEAD_LISTED = 5;

function aheadLine(ahead: readonly AheadItem[], now: number): string {
  if (ahead.length === 0) return colors.green('nothing ends in the next 30 days');
  const each = ahead
    .slice(0, AHEAD_LISTED)
    .map(
      (a) =>
        `${a.kind === 'grant' ? a.name : `client ${a.name} secret`} ${formatRelative(a.at, now)} (${a.reason})`,
    );
  const more = ahead.length > AHEAD_LISTED ? `; ${ahead.length - AHEAD_LISTED} more (status --json)` : '';
  return colors.yellow(`${ahead.length}: ${each.join('; ')}${more}`);
}

function clientsLine(total: number, impaired: ClientView[]): string {
  if (impaired.length === 0) return String(total);
  const line = (state: ClientView['condition']['state'], color: (text: string) => string) => {
    const these = impaired.filter((c) => c.condition.state === state);
    if (these.length === 0) return [];
    const each = these.map((c) => `${c.name} (${conditionText(c.condition)})`);
    return [color(`${these.length} ${state}: ${each.join('; ')}`)];
  };
  return [String(total), ...line('failing', colors.red), ...line('degraded', colors.yellow)].join(', ');
}

function conditionText(condition: ClientView['condition']): string {
  const until = condition.paused_until ? `, paused until ${condition.paused_until}` : '';
  switch (condition.reason) {
    case 'client_error':
      return `credentials refused: ${condition.error_code ?? 'invalid_client'}; fix the client, then grantkeeper retry`;
    case 'failures':
      return `failing requests${until}`;
    default:
      return `rate limited${until}`;
  }
}

function queueLine(counts: Record<string, number>, paused: boolean): string {
  const jobs = `${counts.delayed ?? 0} delayed, ${counts.waiting ?? 0} waiting, ${counts.active ?? 0} active, ${counts.failed ?? 0} failed`;
  return paused ? colors.red(`paused: nothing is refreshed until grantkeeper queue resume (${jobs})`) : jobs;
}

function ownerNote(owner: ManagedRedisOwner | undefined): string {
  if (!owner) return '';
  return owner.alive
    ? ` managed by grantkeeper run pid ${owner.pid}`
    : colors.yellow(
        ` left by grantkeeper run pid ${owner.pid}, which is gone: the next grantkeeper run replaces it`,
      );
}

function diskLine(disk: ReturnType<StorageGate['diskReport']>): string {
  const free = `${formatBytes(disk.freeBytes)} free`;
  if (disk.low) {
    return colors.red(`${free}: too little for the database; new refreshes pause while the disk is full`);
  }
  if (disk.reserveHeldBytes < disk.reserveBytes) {
    return colors.yellow(
      `${free}; the ${formatBytes(disk.reserveBytes)} reserve is not in place (grantkeeper run writes it)`,
    );
  }
  return colors.green(
    disk.reserveBytes > 0 ? `${free}, ${formatBytes(disk.reserveBytes)} reserve in place` : free,
  );
}
