import { GRANT_STATES } from '../../grants/grant.js';
import { CSRF_HEADER } from '../auth/browser-sessions.js';

export const PAGE_REFRESH_MS = 5000;
const FLEET_REFRESH_MS = 30_000;
/** Rows per page of the table; "more" loads the next page after the last row's cursor. */
export const PAGE_ROWS = 100;

/**
 * The grants page's script, sent inline under the response's nonce (no build step). It renders with
 * textContent only, so nothing from the store is ever parsed as HTML, and never sets a style
 * attribute (the CSP admits none). Filters live in the URL query, so a filtered view is a link.
 */
export const PAGE_SCRIPT = `
'use strict';
const REFRESH_MS = ${PAGE_REFRESH_MS};
const PAGE_ROWS = ${PAGE_ROWS};
const FLEET_EVERY = ${FLEET_REFRESH_MS / PAGE_REFRESH_MS};
const HOUR = 3600000;
const me = document.currentScript;
const CSRF = me.dataset.csrf;
const ADMIN = me.dataset.admin === 'true';
const $ = (id) => document.getElementById(id);
const PALETTE = ['#2563eb', '#16a34a', '#9333ea', '#0891b2', '#ca8a04', '#db2777'];

function write(path, init) {
  return fetch(path, { ...init, credentials: 'same-origin', headers: { ...init.headers, '${CSRF_HEADER}': CSRF } });
}
async function read(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401) { location.reload(); throw new Error('signed out'); }
  if (!res.ok) throw new Error('HTTP ' + res.status);
  return res.json();
}
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
function ago(ms) {
  const s = Math.round(ms / 1000), a = Math.abs(s);
  const text = a < 90 ? a + ' s' : a < 5400 ? Math.round(a / 60) + ' min' : a < 172800 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
  return s < 0 ? text + ' ago' : 'in ' + text;
}
const number = (n) => n.toLocaleString('en');

// ---- filters, reflected in the URL ----
const query = new URLSearchParams(location.search);
const filters = { q: query.get('q') || '', client: query.get('client') || '', state: query.get('state') || '' };
let openId = query.get('grant') || '';
function syncUrl() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  if (openId) q.set('grant', openId);
  const search = q.toString();
  history.replaceState(null, '', search ? '?' + search : location.pathname);
}
const search = $('search'), clientSelect = $('client'), stateSelect = $('state');
search.value = filters.q;
stateSelect.value = filters.state;
let typing;
search.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => setFilter('q', search.value.trim()), 250);
});
clientSelect.addEventListener('change', () => setFilter('client', clientSelect.value));
stateSelect.addEventListener('change', () => setFilter('state', stateSelect.value));
function setFilter(key, value) {
  if (filters[key] === value) return;
  filters[key] = value;
  if (key === 'state') stateSelect.value = value;
  syncUrl();
  loadList(true);
  if (key === 'client' && fleet) renderOutcomes(fleet);
  markCards();
}

// ---- the table, a page at a time ----
const body = $('grants'), summary = $('summary'), moreButton = $('more'), shownText = $('shown');
let rows = [], next = null, listSerial = 0;
function listPath(limit, after) {
  const q = new URLSearchParams({ events: '12', limit: String(limit) });
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  if (after) q.set('after', after);
  return 'v1/grants?' + q.toString();
}
function cell(row, text, cls) {
  const td = el('td', cls ? { class: cls, text } : { text });
  row.appendChild(td);
  return td;
}
function badge(state) { return el('span', { class: 'state state-' + state, text: state }); }
function grantRow(g, now) {
  const tr = el('tr', { class: 'row-' + g.state + (g.id === openId ? ' open' : ''), 'data-grant-id': g.id, 'data-state': g.state });
  cell(tr, g.label);
  cell(tr, '').appendChild(badge(g.state));
  cell(tr, (g.client || '–') + ' · ' + g.mode, 'muted');
  cell(tr, ago(Date.parse(g.access_expires_at) - now));
  cell(tr, g.state === 'active' || g.state === 'failing' ? ago(Date.parse(g.next_refresh_at) - now) : '–');
  cell(tr, g.keepalive_deadline ? ago(Date.parse(g.keepalive_deadline) - now) : '–');
  cell(tr, String(g.consecutive_failures));
  cell(tr, g.last_error ? g.last_error + ' (' + ago(Date.parse(g.last_error_at) - now) + ')' : '', 'error');
  const line = el('div', { class: 'timeline' });
  for (const e of (g.recent_events || []).slice().reverse()) {
    line.appendChild(el('span', { class: 'dot o-' + e.outcome, title: e.at + ' ' + e.trigger + ': ' + e.outcome + (e.message ? ' – ' + e.message : '') }));
  }
  cell(tr, '').appendChild(line);
  tr.addEventListener('click', () => openGrant(g.id));
  return tr;
}
function renderRows(now) {
  body.replaceChildren(...rows.map((g) => grantRow(g, now)));
  if (rows.length === 0) body.appendChild(el('tr', {}, el('td', { colspan: '9', class: 'muted', text: 'no grant matches' })));
  moreButton.hidden = !next;
  shownText.textContent = number(rows.length) + (next ? '+' : '') + ' shown';
}
/** Reloads the rows on show (at least one page) with the filters; a reset starts at the first page. */
async function loadList(reset) {
  const serial = ++listSerial;
  const limit = reset ? PAGE_ROWS : Math.min(1000, Math.max(PAGE_ROWS, rows.length));
  const data = await read(listPath(limit));
  if (serial !== listSerial) return; // a newer filter overtook this answer
  rows = data.grants;
  next = data.next;
  renderRows(Date.parse(data.now));
}
moreButton.addEventListener('click', async () => {
  if (!next) return;
  moreButton.disabled = true;
  try {
    const data = await read(listPath(PAGE_ROWS, next));
    rows = rows.concat(data.grants);
    next = data.next;
    renderRows(Date.parse(data.now));
  } finally { moreButton.disabled = false; }
});

// ---- summary cards and charts ----
let fleet = null, timeline = null, outcomes = null, outcomeKey = '';
const STATES = ${JSON.stringify(GRANT_STATES)};
function card(n, k, cls, state) {
  const node = el(state ? 'button' : 'div', { class: 'card ' + (cls || ''), type: 'button' }, el('span', { class: 'n', text: number(n) }), el('span', { class: 'k', text: k }));
  if (state !== undefined) {
    node.dataset.state = state;
    node.addEventListener('click', () => setFilter('state', filters.state === state ? '' : state));
  }
  return node;
}
function markCards() {
  for (const c of document.querySelectorAll('.card[data-state]')) c.classList.toggle('selected', c.dataset.state === filters.state);
}
function renderCards(f) {
  const count = (s) => (f.by_state.find((x) => x.state === s) || { count: 0 }).count;
  $('cards').replaceChildren(
    card(f.total, 'grants', '', ''),
    ...STATES.filter((s) => s === 'active' || count(s) > 0).map((s) => card(count(s), s, s === 'failing' ? 'warn' : s === 'active' ? '' : 'bad', s)),
    card(f.planned.overdue, 'due now', f.planned.overdue > 0 ? 'warn' : ''),
    card(f.deadlines.within_24h, 'deadlines in 24 h', f.deadlines.within_24h > 0 ? 'bad' : ''),
    card(f.deadlines.within_7d, 'deadlines in 7 d', f.deadlines.within_7d > 0 ? 'warn' : ''),
    ...(f.by_client.some((c) => c.degraded && c.degraded !== 'client_error') ? [card(f.by_client.filter((c) => c.degraded && c.degraded !== 'client_error').length, 'clients degraded', 'bad')] : []),
    ...(f.by_client.some((c) => c.degraded === 'client_error') ? [card(f.by_client.filter((c) => c.degraded === 'client_error').length, 'clients failing', 'bad')] : []),
  );
  markCards();
  $('clients').textContent = f.by_client.map((c) => c.client + (c.provider ? ' (' + c.provider + ')' : '') + ': ' + number(c.total) + ' — ' +
    c.by_state.map((s) => number(s.count) + ' ' + s.state).join(', ') +
    (c.degraded === 'client_error' ? ' — failing: the provider refused its credentials; fix the client, then retry its grants'
      : c.degraded ? ' — degraded (' + (c.degraded === 'throttled' ? 'rate limited' : 'failing requests') + '): its refreshes wait' : '')).join(' · ');
  const known = [...clientSelect.options].slice(1).map((o) => o.value).join('\\n');
  const names = f.by_client.map((c) => c.client);
  if (filters.client && !names.includes(filters.client)) names.push(filters.client);
  if (known !== names.join('\\n')) {
    clientSelect.replaceChildren(el('option', { value: '', text: 'every client' }), ...names.map((n) => el('option', { value: n, text: n })));
  }
  clientSelect.value = filters.client;
}
function hours(fromIso) {
  const from = Date.parse(fromIso) / 1000;
  return Array.from({ length: 24 }, (_, h) => from + h * 3600);
}
function chartWidth(id) { return Math.max(300, $(id).clientWidth - 4); }
function renderTimeline(f) {
  const data = [hours(f.ahead_from), f.planned.per_hour, f.deadlines.per_hour];
  if (timeline) { timeline.setData(data); return; }
  timeline = new uPlot({
    width: chartWidth('timeline'), height: 210,
    legend: { live: false },
    scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max)] }, d: { range: (u, min, max) => [0, Math.max(4, max)] } },
    series: [
      {},
      { label: 'planned refreshes', scale: 'n', stroke: '#2563eb', fill: 'rgba(37, 99, 235, .45)', paths: uPlot.paths.bars({ size: [0.45, 30], align: -1 }), points: { show: false } },
      { label: 'keep-alive deadlines (right)', scale: 'd', stroke: '#dc2626', fill: 'rgba(220, 38, 38, .55)', paths: uPlot.paths.bars({ size: [0.45, 30], align: 1 }), points: { show: false } },
    ],
    axes: [{}, { scale: 'n', label: 'refreshes per hour', size: 55 }, { scale: 'd', side: 1, label: 'deadlines per hour', size: 50, grid: { show: false } }],
  }, data, $('timeline'));
}
function renderOutcomes(f) {
  const lines = f.outcomes.filter((o) => !filters.client || o.client === filters.client);
  const key = lines.map((o) => o.client).join('\\n');
  const data = [hours(f.behind_from)];
  for (const o of lines) data.push(o.refreshed, o.failed, o.avg_ms);
  if (outcomes && key === outcomeKey) { outcomes.setData(data); return; }
  if (outcomes) outcomes.destroy();
  outcomeKey = key;
  const series = [{}];
  lines.forEach((o, i) => {
    const colour = PALETTE[i % PALETTE.length];
    series.push(
      { label: o.client + ' refreshed', stroke: colour, width: 2, scale: 'n', points: { show: false } },
      { label: o.client + ' failed', stroke: '#dc2626', dash: [6, 3], width: 2, scale: 'n', points: { show: false } },
      { label: o.client + ' latency (ms, right)', stroke: colour, dash: [2, 3], scale: 'ms', points: { show: false }, value: (u, v) => (v === null ? '–' : v + ' ms') },
    );
  });
  outcomes = new uPlot({
    width: chartWidth('outcomes'), height: 210,
    legend: { live: false },
    scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max)] }, ms: { range: (u, min, max) => [0, Math.max(10, max)] } },
    series,
    axes: [{}, { scale: 'n', label: 'attempts per hour', size: 55 }, { scale: 'ms', side: 1, label: 'token endpoint ms', size: 60, grid: { show: false } }],
  }, data, $('outcomes'));
}
addEventListener('resize', () => {
  if (timeline) timeline.setSize({ width: chartWidth('timeline'), height: 210 });
  if (outcomes) outcomes.setSize({ width: chartWidth('outcomes'), height: 210 });
});
async function loadFleet() {
  const f = await read('v1/fleet');
  fleet = f;
  renderCards(f);
  renderTimeline(f);
  renderOutcomes(f);
  summary.textContent = 'updated ' + new Date(Date.parse(f.now)).toLocaleTimeString();
}

// ---- one grant's detail, and the admin's actions on it ----
const detail = $('detail');
$('close').addEventListener('click', () => { openId = ''; detail.hidden = true; syncUrl(); markOpen(); });
function markOpen() {
  for (const tr of body.querySelectorAll('tr[data-grant-id]')) tr.classList.toggle('open', tr.dataset.grantId === openId);
}
function field(dl, name, value) { dl.append(el('dt', { text: name }), el('dd', { text: value === null || value === undefined ? '–' : String(value) })); }
function renderDetail(g) {
  const now = Date.now();
  const when = (iso) => (iso ? new Date(iso).toLocaleString() + ' (' + ago(Date.parse(iso) - now) + ')' : null);
  $('detail-label').textContent = g.label;
  $('detail-state').replaceChildren(badge(g.state));
  const dl = el('dl');
  field(dl, 'id', g.id);
  field(dl, 'client', (g.client || '–') + (g.provider ? ' · ' + g.provider : ''));
  field(dl, 'mode', g.mode);
  field(dl, 'version', g.version);
  field(dl, 'access token expires', when(g.access_expires_at));
  field(dl, 'next refresh', g.state === 'active' || g.state === 'failing' ? when(g.next_refresh_at) : '–');
  field(dl, 'keep-alive deadline', when(g.keepalive_deadline));
  field(dl, 'renewable until', g.renewable_until ? when(g.renewable_until) + ' · ' + g.renewable_until_reason : 'no hard end known');
  field(dl, 'needs consent by', g.needs_consent_by ? when(g.needs_consent_by) + ' · ' + g.needs_consent_by_reason : null);
  field(dl, 'last refreshed', when(g.last_refreshed_at));
  field(dl, 'failures in a row', g.consecutive_failures);
  field(dl, 'last error', g.last_error);
  if (g.in_doubt_since) field(dl, 'in doubt since', when(g.in_doubt_since));
  $('detail-fields').replaceChildren(dl);
  $('mode').textContent = g.mode === 'eager' ? 'Switch to keepalive' : 'Switch to eager';
  $('mode').dataset.to = g.mode === 'eager' ? 'keepalive' : 'eager';
  const events = g.recent_events || [];
  $('detail-events').replaceChildren(...(events.length ? events.map((e) => el('tr', {},
    el('td', { text: new Date(e.at).toLocaleString() }),
    el('td', {}, el('span', { class: 'dot o-' + e.outcome }), ' ' + e.outcome),
    el('td', { text: e.trigger }),
    el('td', { text: e.duration_ms === null ? '–' : e.duration_ms + ' ms' }),
    el('td', { class: 'error', text: [e.http_status, e.error_code, e.message].filter((x) => x !== null).join(' · ') }),
  )) : [el('tr', {}, el('td', { colspan: '5', class: 'muted', text: 'no refresh attempt yet' }))]));
}
async function openGrant(id, keepResult) {
  openId = id;
  syncUrl();
  markOpen();
  if (!keepResult) { $('result').textContent = ''; $('result').className = 'result'; }
  try {
    renderDetail(await read('v1/grants/' + encodeURIComponent(id)));
    detail.hidden = false;
    detail.dataset.grantId = id;
  } catch (err) {
    $('result').textContent = 'could not load the grant: ' + err.message;
    detail.hidden = false;
  }
}
if (ADMIN) {
  const act = async (button, what, path, init) => {
    const result = $('result');
    const id = openId;
    for (const b of document.querySelectorAll('#actions button')) b.disabled = true;
    result.className = 'result';
    result.textContent = what + '…';
    try {
      const res = await write('v1/grants/' + encodeURIComponent(id) + '/' + path, init);
      const answer = await res.json().catch(() => ({}));
      result.className = 'result ' + (res.ok ? 'ok' : 'refused');
      result.textContent = res.ok ? what + ': done, the grant is ' + answer.state + ' (' + answer.mode + ')' : what + ' refused: ' + (answer.message || 'HTTP ' + res.status);
      result.dataset.status = String(res.status);
      if (res.ok && answer.id === openId) renderDetail(answer);
      else if (openId === id) await openGrant(id, true);
      loadList(false).catch(() => {});
    } finally {
      for (const b of document.querySelectorAll('#actions button')) b.disabled = false;
    }
  };
  $('retry').addEventListener('click', (e) => act(e.target, 'retry', 'retry', { method: 'POST' }));
  $('refresh').addEventListener('click', (e) => act(e.target, 'refresh now', 'refresh', { method: 'POST' }));
  $('mode').addEventListener('click', (e) => act(e.target, 'switch to ' + e.target.dataset.to, 'mode', {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode: e.target.dataset.to }),
  }));
}

$('signout').addEventListener('click', async () => {
  await write('logout', { method: 'POST' }).catch(() => {});
  location.reload();
});

async function refresh(first) {
  try {
    await Promise.all([loadFleet(), loadList(first)]);
    if (first && openId) await openGrant(openId);
    document.body.dataset.loaded = 'true';
  } catch (err) {
    summary.textContent = 'could not load grants: ' + err.message;
  }
}
refresh(true);
// The rows every few seconds; the hourly charts, whose aggregate reads every event of the last day,
// less often.
let polls = 0;
setInterval(() => {
  if (document.hidden) return;
  polls += 1;
  (polls % FLEET_EVERY === 0 ? refresh(false) : loadList(false)).catch(() => {});
}, REFRESH_MS);
`;
