import type { Command } from 'commander';
import { toGrantView } from '../../api/views/grant-view.js';
import { type Grant, isLive } from '../../grants/grant.js';
import { withCliContext } from '../cli-context.js';
import { clientsById, findGrant } from '../grant-lookup.js';
import {
  colorState,
  colors,
  examples,
  formatRelative,
  printJson,
  printLine,
  renderFields,
  renderTable,
} from '../output.js';
import { grantRefArg, wholeNumberArg } from '../parsers.js';
import { registerGrantAddCommand } from './grant-add.js';

/** Where a grant's next token comes from, in an operator's words. */
function nextTokenSource(grant: Grant): string {
  const request = grant.tokenRequest ?? {};
  const asked = [
    request.scope && `scope ${request.scope}`,
    request.resource?.length && `resource ${request.resource.join(' ')}`,
    request.audience && `audience ${request.audience}`,
  ].filter(Boolean);
  const asking = asked.length > 0 ? ` (${asked.join(', ')})` : '';
  switch (grant.kind) {
    case 'authorization_code':
      return 'its refresh token (a user consented: grantkeeper seed)';
    case 'client_credentials':
      return `a new client-credentials request of the client${asking}`;
    case 'jwt_bearer':
      return `a new assertion signed with the client's key, for ${request.subject ?? 'the client itself'}${asking}`;
  }
}

export function registerGrantListCommands(program: Command): void {
  program
    .command('grants')
    .description('list every grant with its state and schedule')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper grants',
        'grantkeeper grants --json | jq -r \'.[] | select(.state != "active") | .label\'',
      ),
    )
    .action(async (opts: { json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const clients = await clientsById(app);
          const grants = await app.grants.list();
          if (opts.json) return printJson(grants.map((g) => toGrantView(g, clients.get(g.clientRef))));
          if (grants.length === 0) return printLine('no grants yet: grantkeeper seed --help');
          const now = Date.now();
          printLine(
            renderTable(
              [
                'LABEL',
                'PROVIDER',
                'KIND',
                'STATE',
                'ACCESS EXPIRES',
                'NEXT REFRESH',
                'LAST REFRESH',
                'FAILURES',
              ],
              grants.map((g) => [
                g.label,
                clients.get(g.clientRef)?.profile.kind ?? '?',
                g.kind,
                colorState(g.state),
                formatRelative(g.accessExpiresAt, now),
                isLive(g.state) ? formatRelative(g.nextRefreshAt, now) : '-',
                formatRelative(g.lastRefreshedAt, now),
                g.consecutiveFailures ? colors.yellow(String(g.consecutiveFailures)) : '0',
              ]),
            ),
          );
        },
        { redis: false },
      );
    });

  const grant = program
    .command('grant')
    .description('inspect one grant, or add one that needs no user (client credentials, JWT bearer)')
    .addHelpText(
      'after',
      examples(
        'grantkeeper grant show @ourbot',
        'grantkeeper grant add graph --client-credentials --label graph-app',
      ),
    );
  registerGrantAddCommand(grant, program);
  grant
    .command('show')
    .description('show a grant and its recent refresh events')
    .argument('<grant>', 'grant id or label', grantRefArg)
    .option('--events <n>', 'how many recent events', wholeNumberArg(1, 500), 20)
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('grantkeeper grant show @ourbot', 'grantkeeper grant show g_AbC123 --json'),
    )
    .action(async (ref: string, opts: { events: number; json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const { grant } = await findGrant(app, ref);
          const view = toGrantView(
            grant,
            await app.clients.get(grant.clientRef),
            await app.grants.recentEvents(grant.id, opts.events),
          );
          if (opts.json) return printJson(view);
          const events = view.recent_events ?? [];
          const now = Date.now();
          printLine(
            renderFields([
              ['label', view.label],
              ['id', view.id],
              ['client', `${view.client} (${view.provider})`],
              ['account', view.subject ?? '-'],
              ['kind', view.kind],
              ['next token from', nextTokenSource(grant)],
              [
                'state',
                view.in_doubt_since
                  ? `${colorState(view.state)}, ${colors.red('in doubt')} since ${view.in_doubt_since}: a request went out and its answer was lost`
                  : colorState(view.state),
              ],
              ['scope', view.scope ?? '-'],
              ['access expires', `${formatRelative(grant.accessExpiresAt, now)} (${view.access_expires_at})`],
              ['next refresh', `${formatRelative(grant.nextRefreshAt, now)} (${view.next_refresh_at})`],
              [
                'renewable until',
                deadlineLine(view.renewable_until, view.renewable_until_reason, now, 'no hard end known'),
              ],
              [
                'needs consent by',
                deadlineLine(view.needs_consent_by, view.needs_consent_by_reason, now, '-'),
              ],
              ['last refresh', formatRelative(grant.lastRefreshedAt, now)],
              ['failures', String(view.consecutive_failures)],
              [
                'last error',
                view.last_error ? `${view.last_error} (${formatRelative(grant.lastErrorAt, now)})` : '-',
              ],
              ['version', String(view.version)],
            ]),
          );
          printLine();
          if (events.length === 0) return printLine('no refresh events yet');
          printLine(
            renderTable(
              ['AT', 'TRIGGER', 'OUTCOME', 'HTTP', 'MS', 'DETAIL'],
              events.map((e) => [
                e.at,
                e.trigger,
                e.outcome === 'refreshed' ? colors.green(e.outcome) : colors.yellow(e.outcome),
                e.http_status === null ? '-' : String(e.http_status),
                e.duration_ms === null ? '-' : String(e.duration_ms),
                [e.error_code, e.message].filter(Boolean).join(': ') || (e.rotated ? 'rotated' : ''),
              ]),
            ),
          );
        },
        { redis: false },
      );
    });

  program
    .command('failed')
    .description('grants whose refreshes fail, with their last error and failed jobs in the queue')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper failed', 'grantkeeper retry --all-failed'))
    .action(async (opts: { json?: boolean }) => {
      await withCliContext(program, async ({ app, engine }) => {
        const clients = await clientsById(app);
        const failedJobs = new Map<string, number>();
        if (engine.queue) {
          for (const job of await engine.queue.getFailed(0, 9999)) {
            const id = job?.data?.grantId;
            if (id) failedJobs.set(id, (failedJobs.get(id) ?? 0) + 1);
          }
        }
        const failing = (await app.grants.list()).filter((g) => g.state !== 'active');
        const rows = failing.map((g) => ({
          ...toGrantView(g, clients.get(g.clientRef)),
          failed_jobs: engine.queue ? (failedJobs.get(g.id) ?? 0) : null,
        }));
        if (opts.json) return printJson(rows);
        if (rows.length === 0) return printLine(colors.green('no failing grants'));
        const now = Date.now();
        printLine(
          renderTable(
            ['LABEL', 'STATE', 'FAILURES', 'FAILED JOBS', 'LAST ERROR AT', 'LAST ERROR'],
            failing.map((g, i) => [
              g.label,
              colorState(g.state),
              String(g.consecutiveFailures),
              rows[i]?.failed_jobs === null ? '-' : String(rows[i]?.failed_jobs),
              formatRelative(g.lastErrorAt, now),
              g.lastError ?? '-',
            ]),
          ),
        );
      });
    });
}

/** A deadline as `in 6 days (2027-…): reason`, or `none` when there is none. */
function deadlineLine(at: string | null, reason: string | null, now: number, none: string): string {
  return at === null ? none : `${formatRelative(Date.parse(at), now)} (${at}): ${reason ?? ''}`;
}
