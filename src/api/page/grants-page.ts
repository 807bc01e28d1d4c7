import { GRANT_STATES } from '../../grants/grant.js';
import { ASSETS } from '../routes/page-assets.js';
import { PAGE_SCRIPT } from './grants-page-script.js';
import { PAGE_STYLE } from './grants-page-style.js';

/**
 * The grants page: one HTML document (no build step) with uPlot from our own origin. Its script
 * polls /v1/fleet and a page of /v1/grants with the session cookie. The CSP admits only what
 * carries this response's nonce (our inline script and style, uPlot's script and style sheet),
 * which is also where the session's CSRF token reaches the page: every write the script makes
 * sends it.
 */
export function grantsPageCsp(nonce: string): string {
  return `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;
}

const STATE_OPTIONS = GRANT_STATES.map((s) => `<option value="${s}">${s}</option>`).join('');

export function renderGrantsPage(nonce: string, session: { csrfToken: string; admin: boolean }): string {
  const links = [
    ...(session.admin ? ['<a href="admin/queues">queue dashboard</a>'] : []),
    '<a href="openapi.json">API</a>',
    '<a href="metrics">metrics</a>',
  ];
  const actions = session.admin
    ? `<div class="actions" id="actions"><button type="button" id="retry">Retry</button><button type="button" id="refresh">Refresh now</button><button type="button" id="mode">Switch mode</button></div>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grantkeeper · grants</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${ASSETS.uplotStyle}" nonce="${nonce}">
<style nonce="${nonce}">${PAGE_STYLE}</style>
<script src="${ASSETS.uplotScript}" nonce="${nonce}"></script></head>
<body><header><h1>grantkeeper</h1><span><span id="summary" class="summary">loading…</span> <button type="button" id="signout">Sign out</button></span></header>
<div class="cards" id="cards"></div>
<div class="clients" id="clients"></div>
<div class="charts">
<div class="chart"><h2>Next 24 h: planned refreshes and keep-alive deadlines</h2><div id="timeline"></div></div>
<div class="chart"><h2>Last 24 h: refresh outcomes and token-endpoint latency per client</h2><div id="outcomes"></div></div>
</div>
<div class="filters"><input id="search" type="search" placeholder="search labels…" aria-label="search labels">
<select id="client" aria-label="client"><option value="">every client</option></select>
<select id="state" aria-label="state"><option value="">every state</option>${STATE_OPTIONS}</select></div>
<table><thead><tr><th>grant</th><th>state</th><th>client · mode</th><th>access token expires</th><th>next refresh</th><th>keep-alive deadline</th><th>failures</th><th>last error</th><th>last attempts</th></tr></thead>
<tbody id="grants"></tbody></table>
<div class="more"><button type="button" id="more" hidden>More</button><span id="shown" class="muted"></span></div>
<p class="muted">${links.join(' · ')}</p>
<aside id="detail" hidden><header><h2 id="detail-label"></h2><span id="detail-state"></span><button type="button" id="close">Close</button></header>
<div id="detail-fields"></div>${actions}<div id="result" class="result" role="status"></div>
<h2>Refresh attempts</h2><table><tbody id="detail-events"></tbody></table></aside>
<script nonce="${nonce}" data-csrf="${session.csrfToken}" data-admin="${session.admin}">${PAGE_SCRIPT}</script></body></html>`;
}

export function renderLoginPage(nonce: string, failed: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>grantkeeper · sign in</title>
<style nonce="${nonce}">${PAGE_STYLE} form { display: flex; gap: .5rem; } input { flex: 0 1 32rem; padding: .4rem; }</style></head>
<body><h1>grantkeeper</h1>
<p class="summary">Sign in with an API key (<code>grantkeeper apikey create NAME --admin</code>, or <code>--grants …</code> for a reader).</p>
${failed ? '<p class="error">That key is not valid.</p>' : ''}
<form method="post" action="login"><input type="password" name="key" placeholder="gk_…" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>`;
}
