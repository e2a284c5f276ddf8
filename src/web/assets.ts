/**
 * What the status page loads, served by the daemon itself: no CDN, no build step. The script is a file of its
 * own (the CSP allows no inline script) and only adds to a page that works without it.
 */

export const PAGE_CSS = `
:root { color-scheme: light dark; --fg: #1d232a; --muted: #5b6570; --bg: #fbfbfc; --card: #fff; --line: #d9dde2;
  --ok: #1c6e3d; --ok-bg: #e3f4e9; --bad: #a8201a; --bad-bg: #fbe4e2; --warn: #7a4b00; --warn-bg: #fdf0d5;
  --accent: #1f5fbf; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ec; --muted: #a3adb8; --bg: #14171a; --card: #1c2024; --line: #343a41;
    --ok: #7fd49b; --ok-bg: #183324; --bad: #ff9a90; --bad-bg: #3d1a17; --warn: #f2c36b; --warn-bg: #3a2c10;
    --accent: #8ab4f8; }
}
* { box-sizing: border-box; }
/* A class that sets display must not undo the hidden attribute (the form stays hidden without script). */
[hidden] { display: none !important; }
body { margin: 0 auto; max-width: 78rem; padding: 0 1rem 2rem; font: 15px/1.45 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: var(--card); padding: .5rem 1rem; }
.skip:focus { left: 1rem; }
header { padding: 1rem 0 .5rem; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 .5rem; font-size: 1.5rem; }
h1 .host { font-weight: normal; color: var(--muted); }
h2 { margin: 0 0 .5rem; font-size: 1.3rem; }
h3 { margin: 1.25rem 0 .5rem; font-size: 1.05rem; }
code { font: .9em ui-monospace, monospace; overflow-wrap: anywhere; }
nav ul { list-style: none; padding: 0; margin: .5rem 0; display: flex; flex-wrap: wrap; gap: .25rem 1.25rem; }
.verdict { margin: .25rem 0; padding: .5rem .75rem; border-radius: 6px; }
.verdict.ok { background: var(--ok-bg); color: var(--ok); }
.verdict.partial { background: var(--warn-bg); color: var(--warn); }
.verdict.failed { background: var(--bad-bg); color: var(--bad); }
.meta, .note, .type { color: var(--muted); }
.type { font-size: .85em; }
.database { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem;
  margin: 1rem 0; }
.badge { font-size: .8rem; font-weight: 600; padding: .1rem .5rem; border-radius: 999px; vertical-align: middle; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.partial { background: var(--warn-bg); color: var(--warn); }
.badge.failed { background: var(--bad-bg); color: var(--bad); }
.mark.ok { color: var(--ok); }
.mark.partial, .mark.running { color: var(--warn); }
.mark.failed { color: var(--bad); font-weight: 600; }
.mark.remove { color: var(--warn); font-weight: 600; }
.reason { color: var(--bad); }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: .25rem 1.5rem; margin: .5rem 0; }
.facts div { display: flex; gap: .5rem; }
.facts dt { min-width: 11rem; color: var(--muted); }
.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
caption { text-align: left; color: var(--muted); padding: .25rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
tr.failed > * { background: var(--bad-bg); }
tr.partial > * { background: var(--warn-bg); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(32rem, 1fr)); gap: 1rem; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .9rem; }
svg.chart { width: 100%; height: auto; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .axis, svg.chart .empty { fill: var(--muted); font-size: 13px; }
svg.chart .trend { fill: none; stroke: var(--accent); stroke-opacity: .35; stroke-width: 1.5; }
svg.chart .point { fill: var(--accent); }
svg.chart .point.failed { fill: var(--bad); }
.action { margin: .5rem 0; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.action input { font: inherit; padding: .25rem .5rem; }
.action button { font: inherit; padding: .3rem .9rem; cursor: pointer; }
footer { margin-top: 1.5rem; color: var(--muted); font-size: .9rem; }
`;

export const PAGE_JS = `'use strict';
(function () {
  var REFRESH_MS = 30000;
  function byId(id) { return document.getElementById(id); }
  // Never pull the page from under someone reading it with the keyboard: skip a refresh while focus is inside.
  function busy() {
    var a = document.activeElement;
    if (!a || a === document.body) return false;
    var main = byId('main'), overview = byId('overview');
    return (main && main.contains(a)) || (overview && overview.contains(a));
  }
  function swap(next, id) {
    var now = byId(id), fresh = next.getElementById(id);
    if (now && fresh) now.replaceWith(document.importNode(fresh, true));
  }
  function refresh() {
    if (document.visibilityState !== 'visible' || busy()) return Promise.resolve();
    return fetch(location.pathname, { headers: { accept: 'text/html' }, cache: 'no-store' })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.text();
      })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, 'text/html');
        if (busy()) return;
        swap(next, 'overview');
        swap(next, 'main');
        document.title = next.title;
        byId('refresh-state').textContent = '';
      })
      .catch(function (error) {
        byId('refresh-state').textContent = 'Could not refresh (' + error.message + '); this is what was read before.';
      });
  }
  setInterval(refresh, REFRESH_MS);
  document.addEventListener('visibilitychange', refresh);

  var form = byId('backup-now');
  if (!form) return;
  form.hidden = false;
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var out = byId('backup-now-result'), input = byId('backup-token');
    out.textContent = 'Asking the daemon…';
    // The token goes in the header of this one request and nowhere else: not stored, not in the URL.
    fetch('/api/backup', { method: 'POST', headers: { authorization: 'Bearer ' + input.value } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          out.textContent = response.ok ? body.message : (body.error || 'HTTP ' + response.status);
          if (response.ok) { input.value = ''; setTimeout(refresh, 2000); }
        });
      })
      .catch(function (error) { out.textContent = 'Could not reach the daemon: ' + error.message; });
  });
})();
`;

export const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path fill="#1f5fbf" d="M16 2 4 7v8c0 7.5 5.1 13.4 12 15 6.9-1.6 12-7.5 12-15V7z"/>' +
  '<path fill="#fff" d="m14 20.2-4.6-4.6 1.8-1.8 2.8 2.8 6.8-6.8 1.8 1.8z"/></svg>';
