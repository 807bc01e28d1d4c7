/** The grants page's and sign-in form's style sheet, sent inline under the response's nonce. */
export const PAGE_STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.25rem 1.5rem; color: #1f2937; background: #f9fafb; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: .95rem; margin: 0 0 .4rem; color: #374151; }
header { display: flex; justify-content: space-between; align-items: baseline; margin-bottom: .75rem; }
.summary, .muted { color: #6b7280; }
.summary { margin-bottom: .75rem; }
button { font: inherit; padding: .3rem .7rem; border: 1px solid #d1d5db; border-radius: 6px; background: #fff; cursor: pointer; }
button:hover { background: #f3f4f6; }
button:disabled { opacity: .5; cursor: default; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; margin-bottom: .75rem; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: .4rem .75rem; min-width: 5.5rem; text-align: left; }
.card .n { display: block; font-size: 1.35rem; font-weight: 650; }
.card .k { color: #6b7280; font-size: 12px; }
.card.selected { outline: 2px solid #2563eb; }
.card.warn .n { color: rgb(217, 119, 6); }
.card.bad .n { color: rgb(220, 38, 38); }
.clients { color: #4b5563; font-size: 13px; margin-bottom: .75rem; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: .75rem; margin-bottom: .75rem; }
.chart { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: .5rem .6rem; min-width: 0; }
.u-legend { font-size: 12px; }
.u-legend .u-marker { width: .8em; height: .8em; }
.u-legend th { font-weight: 500; }
.filters { display: flex; gap: .5rem; align-items: center; margin-bottom: .5rem; }
.filters input, .filters select { font: inherit; padding: .3rem .45rem; border: 1px solid #d1d5db; border-radius: 6px; background: #fff; }
.filters input { flex: 0 1 20rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { font-weight: 600; background: #f3f4f6; }
tbody tr[data-grant-id] { cursor: pointer; }
tbody tr[data-grant-id] td:first-child { white-space: nowrap; }
tbody tr[data-grant-id]:hover td { background: #eff6ff; }
tr.open td { background: #dbeafe; }
.state { display: inline-block; padding: .1rem .5rem; border-radius: 999px; color: #fff; font-weight: 600; font-size: 12px; }
.state-active { background: rgb(22, 163, 74); }
.state-failing { background: rgb(217, 119, 6); }
.state-needs_reconsent { background: rgb(220, 38, 38); }
.state-client_error { background: rgb(147, 51, 234); }
.state-broken { background: rgb(75, 85, 99); }
tr.row-failing td { background: #fffbeb; }
tr.row-needs_reconsent td, tr.row-client_error td, tr.row-broken td { background: #fef2f2; }
.error { color: #b91c1c; max-width: 24rem; overflow-wrap: anywhere; }
.timeline { display: flex; gap: 3px; }
.dot { width: 10px; height: 10px; border-radius: 2px; display: inline-block; }
.o-refreshed { background: rgb(22, 163, 74); }
.o-transient_error, .o-in_doubt { background: rgb(217, 119, 6); }
.o-needs_reconsent, .o-client_error, .o-broken { background: rgb(220, 38, 38); }
.o-overtaken, .o-conflict { background: #9ca3af; }
.more { margin: .6rem 0; display: flex; gap: .75rem; align-items: center; }
#detail { position: fixed; top: 0; right: 0; bottom: 0; width: 430px; background: #fff; border-left: 1px solid #d1d5db;
  box-shadow: -6px 0 18px rgba(0, 0, 0, .08); padding: 1rem 1.1rem; overflow-y: auto; }
#detail[hidden] { display: none; }
#detail header { margin-bottom: .5rem; }
#detail dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0 0 .8rem; font-size: 13px; }
#detail dt { color: #6b7280; }
#detail dd { margin: 0; overflow-wrap: anywhere; }
#detail table { font-size: 12px; }
.actions { display: flex; gap: .4rem; margin-bottom: .4rem; }
.result { min-height: 1.2rem; font-size: 13px; margin-bottom: .6rem; }
.result.ok { color: rgb(21, 128, 61); }
.result.refused { color: #b91c1c; }
`;
