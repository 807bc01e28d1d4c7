import { CSRF_HEADER } from './browser-sessions.js';

/**
 * The grants page: one self-contained HTML document (no build step). Its script polls
 * /v1/grants with the session cookie and renders with textContent only, so nothing from the db is
 * ever parsed as HTML. The CSP admits only the script carrying this response's nonce, which is also
 * where the session's CSRF token reaches the page: every write the script makes sends it.
 */
export const PAGE_REFRESH_MS = 5000;

export function grantsPageCsp(nonce: string): string {
  return `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2937; background: #f9fafb; }
h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
.summary { color: #4b5563; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { font-weight: 600; background: #f3f4f6; }
.state { display: inline-block; padding: .1rem .5rem; border-radius: 999px; color: #fff; font-weight: 600; font-size: 12px; }
.state-active { background: rgb(22, 163, 74); }
.state-failing { background: rgb(217, 119, 6); }
.state-needs_reconsent { background: rgb(220, 38, 38); }
.state-client_error { background: rgb(147, 51, 234); }
tr.row-failing td { background: #fffbeb; }
tr.row-needs_reconsent td, tr.row-client_error td { background: #fef2f2; }
.error { color: #b91c1c; max-width: 28rem; overflow-wrap: anywhere; }
.timeline { display: flex; gap: 3px; }
.dot { width: 10px; height: 10px; border-radius: 2px; }
.o-refreshed { background: rgb(22, 163, 74); }
.o-transient_error { background: rgb(217, 119, 6); }
.o-needs_reconsent, .o-client_error { background: rgb(220, 38, 38); }
.o-overtaken { background: #9ca3af; }
.muted { color: #6b7280; }
header { display: flex; justify-content: space-between; align-items: baseline; }
`;

const SCRIPT = `
const REFRESH_MS = ${PAGE_REFRESH_MS};
const CSRF = document.currentScript.dataset.csrf;
function write(path, init) {
  return fetch(path, { ...init, credentials: 'same-origin', headers: { ...init.headers, '${CSRF_HEADER}': CSRF } });
}
document.getElementById('signout').addEventListener('click', async () => {
  await write('logout', { method: 'POST' }).catch(() => {});
  location.reload();
});
const body = document.getElementById('grants');
const summary = document.getElementById('summary');
function ago(ms) {
  const s = Math.round(ms / 1000), a = Math.abs(s);
  const text = a < 90 ? a + ' s' : a < 5400 ? Math.round(a / 60) + ' min' : a < 172800 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
  return s < 0 ? text + ' ago' : 'in ' + text;
}
function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function render(data) {
  const now = Date.parse(data.now);
  const counts = {};
  body.replaceChildren();
  for (const g of data.grants) {
    counts[g.state] = (counts[g.state] || 0) + 1;
    const tr = document.createElement('tr');
    tr.className = 'row-' + g.state;
    tr.dataset.grantId = g.id;
    tr.dataset.state = g.state;
    cell(tr, g.label);
    const badge = document.createElement('span');
    badge.className = 'state state-' + g.state;
    badge.textContent = g.state;
    cell(tr, '').appendChild(badge);
    cell(tr, g.mode + (g.provider ? ' · ' + g.provider : ''), 'muted');
    cell(tr, ago(Date.parse(g.access_expires_at) - now));
    cell(tr, g.state === 'active' || g.state === 'failing' ? ago(Date.parse(g.next_refresh_at) - now) : '–');
    cell(tr, String(g.consecutive_failures));
    cell(tr, g.last_error ? g.last_error + ' (' + ago(Date.parse(g.last_error_at) - now) + ')' : '', 'error');
    const line = document.createElement('div');
    line.className = 'timeline';
    for (const e of (g.recent_events || []).slice().reverse()) {
      const dot = document.createElement('span');
      dot.className = 'dot o-' + e.outcome;
      dot.title = e.at + ' ' + e.trigger + ': ' + e.outcome + (e.message ? ' – ' + e.message : '');
      line.appendChild(dot);
    }
    cell(tr, '').appendChild(line);
    body.appendChild(tr);
  }
  summary.textContent = data.grants.length + ' grants · ' +
    Object.entries(counts).map(([k, v]) => v + ' ' + k).join(' · ') + ' · updated ' + new Date(now).toLocaleTimeString();
}
async function load() {
  try {
    const res = await fetch('v1/grants?events=12', { credentials: 'same-origin', cache: 'no-store' });
    if (res.status === 401) { location.reload(); return; }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    render(await res.json());
    document.body.dataset.loaded = 'true';
  } catch (err) {
    summary.textContent = 'could not load grants: ' + err.message;
  }
}
load();
setInterval(load, REFRESH_MS);
`;

export function renderGrantsPage(nonce: string, session: { csrfToken: string; admin: boolean }): string {
  const links = [
    ...(session.admin ? ['<a href="admin/queues">queue dashboard</a>'] : []),
    '<a href="openapi.json">API</a>',
    '<a href="metrics">metrics</a>',
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grantkeeper · grants</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="${nonce}">${STYLE}</style></head>
<body><header><h1>grantkeeper</h1><button type="button" id="signout">Sign out</button></header>
<div id="summary" class="summary">loading…</div>
<table><thead><tr><th>grant</th><th>state</th><th>mode</th><th>access token expires</th><th>next refresh</th><th>failures</th><th>last error</th><th>last attempts</th></tr></thead>
<tbody id="grants"></tbody></table>
<p class="muted">${links.join(' · ')}</p>
<script nonce="${nonce}" data-csrf="${session.csrfToken}">${SCRIPT}</script></body></html>`;
}

export function renderLoginPage(nonce: string, failed: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grantkeeper · sign in</title>
<style nonce="${nonce}">${STYLE} form { display: flex; gap: .5rem; } input { flex: 0 1 32rem; padding: .4rem; }</style></head>
<body><h1>grantkeeper</h1>
<p class="summary">Sign in with an API key (<code>grantkeeper apikey create NAME --admin</code>, or <code>--grants …</code> for a reader).</p>
${failed ? '<p class="error">That key is not valid.</p>' : ''}
<form method="post" action="login"><input type="password" name="key" placeholder="gk_…" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>`;
}
