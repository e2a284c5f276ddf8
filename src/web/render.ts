import { formatTime, formatZoned } from '../util/time.js';
import { humanBytes, humanDuration } from '../util/fs.js';
import { COOPERATIVE_WAL_NOTE, recoverableUntil, shippingBehind } from '../pitr/standing.js';
import { scatterChart } from './chart.js';
import type {
  ActivityView,
  DatabaseView,
  DestinationView,
  ReplicationDestinationView,
  ReplicationView,
  RetentionView,
  RunView,
  StatusDocument,
} from './document.js';
import { anchorId, escapeHtml as h } from './html.js';

/** Paths of what the page loads from the daemon itself (the CSP allows nothing else). */
export const ASSET_PATHS = {
  css: '/assets/page.css',
  js: '/assets/page.js',
  icon: '/assets/icon.svg',
} as const;

const VERDICT_TEXT = { ok: 'OK', degraded: 'DEGRADED', unhealthy: 'UNHEALTHY' } as const;

/** Renders times and ages against the document's own clock, in its zone. */
class Clock {
  readonly now: number;
  constructor(
    readonly timeZone: string,
    generatedAt: string,
  ) {
    this.now = new Date(generatedAt).getTime();
  }

  /** `2026-03-01 03:00:00 Europe/Berlin (5 h 2 min ago)` in a `<time>` element. */
  when(isoTime: string | undefined | null, options: { age?: boolean; zone?: boolean } = {}): string {
    if (!isoTime) return '—';
    const date = new Date(isoTime);
    const text = options.zone === false ? formatZoned(date, this.timeZone) : formatTime(date, this.timeZone);
    const delta = date.getTime() - this.now;
    const age =
      options.age === false
        ? ''
        : delta > 1000
          ? ` (in ${humanDuration(delta)})`
          : ` (${humanDuration(Math.max(0, -delta))} ago)`;
    return `<time datetime="${h(isoTime)}">${h(text)}</time>${h(age)}`;
  }
}

const statusMark = (status: string): string => {
  if (status === 'ok') return '<span class="mark ok">✓ ok</span>';
  if (status === 'partial') return '<span class="mark partial">⚠ partly done</span>';
  if (status === 'running') return '<span class="mark running">… running</span>';
  return `<span class="mark failed">✗ ${h(status)}</span>`;
};

function runText(run: RunView | undefined, clock: Clock): string {
  if (!run) return 'none yet';
  const took = run.durationMs !== undefined ? `, took ${humanDuration(run.durationMs)}` : '';
  const why = run.error ? ` — ${h(run.stage ? `${run.stage}: ` : '')}${h(run.error)}` : '';
  return `${clock.when(run.startedAt)}${h(took)} ${statusMark(run.status)}${why}`;
}

function facts(db: DatabaseView, clock: Clock): string {
  const rows: [string, string][] = [
    ['Last run', runText(db.lastRun, clock)],
    ['Next run', db.nextRun ? clock.when(db.nextRun) : 'none (the daemon is stopping)'],
    [
      'Newest backup',
      db.newestBackup
        ? `<code>${h(db.newestBackup.file)}</code>, ${h(humanBytes(db.newestBackup.bytes))}, ${clock.when(db.newestBackup.time)}${db.newestBackup.trigger === 'manual' ? ' (manual)' : ''}`
        : 'none',
    ],
    [
      'Newest verified backup',
      db.newestVerified
        ? `<code>${h(db.newestVerified.file)}</code> on ${h(db.newestVerified.source)}, verified ${clock.when(db.newestVerified.at)}`
        : 'none verified yet',
    ],
    [
      'On disk',
      `${db.backups.count} backup${db.backups.count === 1 ? '' : 's'}, ${h(humanBytes(db.backups.bytes))}`,
    ],
    ['Host', `<code>${h(db.host)}</code> (copies on shared destinations are this host's)`],
  ];
  return `<dl class="facts">${rows.map(([k, v]) => `<div><dt>${h(k)}</dt><dd>${v}</dd></div>`).join('')}</dl>`;
}

function destinationRow(d: DestinationView, clock: Clock): string {
  const state = d.healthy
    ? '<span class="mark ok">✓ ok</span>'
    : `<span class="mark failed">✗ needs attention</span><br><span class="reason">${h(d.reason)}</span>`;
  const missing = d.missingCount
    ? `${d.missingCount}: ${d.missing
        .slice(0, 5)
        .map((m) => `<code>${h(m)}</code>`)
        .join(', ')}${d.missingCount > 5 ? ', …' : ''}`
    : '0';
  const failure = d.lastFailure
    ? `${clock.when(d.lastFailure.at, { zone: false })}: ${h(d.lastFailure.error)}${d.lastAttemptFailed ? '' : ' <span class="note">(uploads worked since)</span>'}`
    : 'none';
  return (
    `<tr class="${d.healthy ? 'ok' : 'failed'}" data-destination="${h(d.name)}">` +
    `<th scope="row">${h(d.name)} <span class="type">${h(d.type)}</span></th>` +
    `<td>${state}</td>` +
    `<td>${d.newestCopy ? `<code>${h(d.newestCopy.file)}</code><br>${clock.when(d.newestCopy.time, { zone: false })}` : 'none'}</td>` +
    `<td>${d.lastSuccess ? clock.when(d.lastSuccess.at, { zone: false }) : 'never'}</td>` +
    `<td>${missing}</td>` +
    `<td>${failure}</td>` +
    `<td>${d.lastVerified ? `<code>${h(d.lastVerified.file)}</code><br>${clock.when(d.lastVerified.at, { zone: false })}` : 'never'}</td>` +
    `</tr>`
  );
}

function destinations(db: DatabaseView, clock: Clock): string {
  if (db.destinations.length === 0) return '<p>No off-site destination is configured.</p>';
  return (
    `<div class="scroll"><table class="destinations"><caption>Off-site copies of this host (times in ${h(clock.timeZone)})</caption>` +
    '<thead><tr><th scope="col">Destination</th><th scope="col">State</th><th scope="col">Newest copy</th>' +
    '<th scope="col">Last upload</th><th scope="col">Missing</th><th scope="col">Last error</th>' +
    '<th scope="col">Last verified</th></tr></thead>' +
    `<tbody>${db.destinations.map((d) => destinationRow(d, clock)).join('')}</tbody></table></div>`
  );
}

/** A count of bytes as the page says it, with the exact number for scripts and tests (`<data value>`). */
const bytesData = (bytes: number) => `<data value="${bytes}">${h(humanBytes(bytes))}</data>`;

function replicationRow(r: ReplicationDestinationView, clock: Clock): string {
  const state = r.healthy
    ? '<span class="mark ok">✓ ok</span>'
    : `<span class="mark failed">✗ needs attention</span>${r.problems.map((p) => `<br><span class="reason">${h(p)}</span>`).join('')}`;
  const behind = shippingBehind(r);
  const lag =
    `${r.lagMs !== undefined ? `<data class="lag" value="${r.lagMs}">${h(humanDuration(r.lagMs))}</data>` : '—'}` +
    ` (${h(behind)})<br>last shipped ${r.lastShippedAt ? clock.when(r.lastShippedAt, { zone: false }) : 'never'}`;
  const until = recoverableUntil(r);
  const recoverable = r.recoverableFrom
    ? `${clock.when(r.recoverableFrom, { zone: false })} to ${until === 'now' ? 'now' : until ? clock.when(until, { zone: false }) : 'the last shipment'}`
    : r.baseOwedSince
      ? `not yet: a base snapshot is owed since ${clock.when(r.baseOwedSince, { zone: false })}`
      : '—';
  const latestGap = r.recentGaps.at(-1);
  const gaps = r.gaps
    ? `<data class="gaps" value="${r.gaps}">${r.gaps}</data>, the latest ${latestGap ? clock.when(latestGap, { zone: false }) : '—'}`
    : '<data class="gaps" value="0">none</data>';
  return (
    `<tr class="${r.healthy ? 'ok' : 'failed'}" data-replication="${h(r.destination)}">` +
    `<th scope="row">${h(r.destination)}</th><td>${state}</td><td>${lag}</td><td class="recoverable">${recoverable}</td>` +
    `<td>${gaps}</td>` +
    `<td><data class="segments" value="${r.segmentsShipped}">${r.segmentsShipped}</data> segment${r.segmentsShipped === 1 ? '' : 's'}, <span class="bytes">${bytesData(r.bytesShipped)}</span></td>` +
    `</tr>`
  );
}

const BY_TEXT = {
  'this-process': 'this daemon',
  'other-process': 'another process',
  nobody: 'nobody',
} as const;

/** Who ships the database's WAL and how, each destination's lag, window, gaps and shipments, problems marked. */
function replication(r: ReplicationView, clock: Clock): string {
  const who = r.replicator
    ? ` (pid ${r.replicator.pid} on <code>${h(r.replicator.host)}</code>, ${h(r.replicator.purpose)}, since ${clock.when(r.replicator.startedAt, { zone: false })})`
    : r.configured
      ? ''
      : ' (it is not marked <code>replicate</code>: the figures are those the last <code>litekeep replicate</code> left)';
  const lead =
    `<p class="replicator" data-by="${r.by}">Replicated by <strong>${h(BY_TEXT[r.by])}</strong>${who} · mode <code>${h(r.mode)}</code>` +
    `${r.walBytes !== undefined && !r.walLarge ? ` · WAL ${bytesData(r.walBytes)} (${COOPERATIVE_WAL_NOTE})` : ''}</p>`;
  const problems = r.problems.map((p) => `<p class="mark failed problem">✗ ${h(p)}</p>`).join('');
  const table = r.destinations.length
    ? `<div class="scroll"><table class="replication"><caption>WAL shipping per incremental destination (times in ${h(clock.timeZone)})</caption>` +
      '<thead><tr><th scope="col">Destination</th><th scope="col">State</th><th scope="col">Lag</th>' +
      '<th scope="col">Restorable to the second</th><th scope="col">Gaps</th><th scope="col">Shipped</th></tr></thead>' +
      `<tbody>${r.destinations.map((d) => replicationRow(d, clock)).join('')}</tbody></table></div>`
    : '<p>Nothing shipped yet.</p>';
  return `<div class="replication" data-healthy="${r.healthy}">${lead}${problems}${table}</div>`;
}

function charts(db: DatabaseView, clock: Clock, idBase: string): string {
  const from = new Date(db.chart.since).getTime();
  const to = clock.now;
  const size = scatterChart(
    db.chart.backups.map((b) => ({
      time: new Date(b.time).getTime(),
      value: b.bytes,
      label: `${b.file}: ${humanBytes(b.bytes)}${b.removed ? ' (removed by retention)' : ''}`,
    })),
    {
      id: `${idBase}-size`,
      title: `${db.name}: backup size, last 90 days`,
      from,
      to,
      timeZone: clock.timeZone,
      formatValue: humanBytes,
      noun: 'backups',
    },
  );
  const duration = scatterChart(
    db.chart.runs.map((r) => ({
      time: new Date(r.startedAt).getTime(),
      value: r.durationMs,
      label: `run #${r.id}, ${formatZoned(new Date(r.startedAt), clock.timeZone)}: ${humanDuration(r.durationMs)}, ${r.status}`,
      failed: r.status === 'failed',
    })),
    {
      id: `${idBase}-duration`,
      title: `${db.name}: run duration, last 90 days`,
      from,
      to,
      timeZone: clock.timeZone,
      formatValue: (ms) => humanDuration(ms),
      noun: 'runs',
    },
  );
  const note = db.chart.truncated ? '<p class="note">Only the newest 2000 of the window are drawn.</p>' : '';
  return (
    `<div class="charts"><figure class="chart-size"><figcaption>Backup size (one point per backup)</figcaption>${size}</figure>` +
    `<figure class="chart-duration"><figcaption>Run duration (failed runs <span class="mark failed">✗</span>)</figcaption>${duration}</figure></div>${note}`
  );
}

function retention(r: RetentionView, clock: Clock): string {
  if (r.error) return `<p class="mark failed">✗ The plan cannot be made: ${h(r.error)}</p>`;
  const lead =
    `<p>Policy: ${h(r.policy ?? '—')}. ${r.keep} kept, ${r.remove} to be removed${r.enabled ? ' by the next run' : ''}` +
    `${r.enabled ? '' : ' — retention is off (<code>prune: false</code>): nothing is removed'}.` +
    `${r.setAside.length ? ` Set aside (their newest verification failed): ${r.setAside.map((s) => `<code>${h(s.file)}</code>`).join(', ')}.` : ''}` +
    `${r.future.length ? ` Dated in the future (kept, counted by no rule): ${r.future.map((f) => `<code>${h(f)}</code>`).join(', ')}.` : ''}</p>`;
  if (r.total === 0) return `${lead}<p>No local backups yet.</p>`;
  const rows = r.backups
    .map(
      (b) =>
        `<tr class="${b.action}"><td><code>${h(b.file)}</code>${b.trigger === 'manual' ? ' <span class="type">manual</span>' : ''}</td>` +
        `<td>${clock.when(b.time, { zone: false, age: false })}</td>` +
        `<td>${b.action === 'keep' ? '<span class="mark ok">keep</span>' : '<span class="mark remove">remove</span>'}</td>` +
        `<td>${h(b.action === 'keep' ? `kept because ${b.reasons.join(', ')}` : b.reasons.join('; ') || 'no rule keeps it')}</td></tr>`,
    )
    .join('');
  const more =
    r.total > r.backups.length ? `<p class="note">And ${r.total - r.backups.length} older.</p>` : '';
  return (
    `${lead}<div class="scroll"><table class="retention"><caption>Local backups, newest first (times in ${h(clock.timeZone)})</caption>` +
    '<thead><tr><th scope="col">Backup</th><th scope="col">Taken</th><th scope="col">Plan</th><th scope="col">Why</th></tr></thead>' +
    `<tbody>${rows}</tbody></table></div>${more}`
  );
}

function activity(events: ActivityView[], clock: Clock): string {
  if (events.length === 0) return '<p>Nothing recorded yet.</p>';
  const rows = events
    .map(
      (e) =>
        `<tr class="${e.failed ? 'failed' : e.status === 'partial' ? 'partial' : 'ok'}" data-kind="${h(e.kind)}">` +
        `<td>${clock.when(e.at, { zone: false, age: false })}</td><td>${h(e.kind)}</td>` +
        `<td>${statusMark(e.status)}</td><td>${h(e.summary)}${e.error ? `<br><span class="reason">${h(e.error)}</span>` : ''}</td></tr>`,
    )
    .join('');
  return (
    `<div class="scroll"><table class="activity"><caption>The newest ${events.length} events, newest first (times in ${h(clock.timeZone)})</caption>` +
    '<thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">Result</th><th scope="col">Details</th></tr></thead>' +
    `<tbody>${rows}</tbody></table></div>`
  );
}

function database(db: DatabaseView, clock: Clock): string {
  const id = anchorId('db', db.name);
  const badge = db.health.healthy
    ? '<span class="badge ok">✓ healthy</span>'
    : '<span class="badge failed">✗ unhealthy</span>';
  const degraded = db.destinations.filter((d) => !d.healthy).length;
  const offsite =
    db.health.healthy && degraded
      ? ` <span class="badge partial">⚠ ${degraded} destination${degraded === 1 ? '' : 's'} failing</span>`
      : '';
  const pitr =
    db.replication && !db.replication.healthy
      ? ' <span class="badge partial">⚠ replication needs attention</span>'
      : '';
  const warnings = db.warnings.map((w) => `<p class="mark partial">⚠ ${h(w)}</p>`).join('');
  return (
    `<section class="database" id="${id}" aria-labelledby="${id}-h" data-database="${h(db.name)}" data-healthy="${db.health.healthy}">` +
    `<h2 id="${id}-h">${h(db.name)} ${badge}${offsite}${pitr}</h2>` +
    `${db.health.healthy ? '' : `<p class="reason">${h(db.health.reason)}</p>`}${warnings}` +
    facts(db, clock) +
    `<h3>Destinations</h3>${destinations(db, clock)}` +
    (db.replication ? `<h3>Point-in-time replication</h3>${replication(db.replication, clock)}` : '') +
    `<h3>Last 90 days</h3>${charts(db, clock, id)}` +
    `<h3>Retention plan</h3>${retention(db.retention, clock)}` +
    `<h3>Recent activity</h3>${activity(db.activity, clock)}` +
    `</section>`
  );
}

/** The part of the page that a refresh replaces: the verdict, the schedule and the list of databases. */
function overview(doc: StatusDocument, clock: Clock): string {
  const verdictClass = doc.status === 'ok' ? 'ok' : doc.status === 'degraded' ? 'partial' : 'failed';
  const nav = doc.databases
    .map(
      (db) =>
        `<li><a href="#${anchorId('db', db.name)}">${h(db.name)}</a> ${db.health.healthy ? (db.destinations.some((d) => !d.healthy) || db.replication?.healthy === false ? '<span class="mark partial">⚠</span>' : '<span class="mark ok">✓</span>') : '<span class="mark failed">✗</span>'}</li>`,
    )
    .join('');
  return (
    `<div id="overview">` +
    `<p class="verdict ${verdictClass}" id="verdict"><strong>${VERDICT_TEXT[doc.status]}</strong>${doc.reason ? ` — ${h(doc.reason)}` : ': every backup is recent and every destination is fine'}</p>` +
    `<p class="meta">Read from the activity log ${clock.when(doc.generatedAt, { age: false })} · ` +
    `schedule <code>${h(doc.schedule.expression)}</code> in ${h(doc.schedule.timeZone)}, next run ${doc.schedule.nextRun ? clock.when(doc.schedule.nextRun) : 'none (stopping)'}` +
    `${doc.schedule.running ? ' · <strong class="mark running">a backup is running now</strong>' : ''}</p>` +
    (doc.databases.length
      ? `<nav aria-label="Databases"><ul>${nav}</ul></nav>`
      : '<p>No database is configured.</p>') +
    `</div>`
  );
}

function actions(doc: StatusDocument): string {
  if (!doc.actions.backupNow) return '';
  // Hidden until the script runs: the request needs an Authorization header, which only a script can add.
  return (
    `<form id="backup-now" class="action" method="post" action="/api/backup" hidden>` +
    `<label for="backup-token">Token</label> ` +
    `<input id="backup-token" name="token" type="password" autocomplete="off" spellcheck="false" required> ` +
    `<button type="submit">Back up now</button> ` +
    `<output id="backup-now-result" role="status" aria-live="polite"></output></form>` +
    `<noscript><p class="note">“Back up now” needs JavaScript; without it: ` +
    `<code>curl -X POST -H "Authorization: Bearer $TOKEN" http://HOST:PORT/api/backup</code></p></noscript>`
  );
}

/**
 * The whole page: server-rendered HTML that reads without JavaScript (the script only refreshes it and sends
 * "back up now"), with every value escaped. Pure: the same document gives the same page.
 */
export function renderPage(doc: StatusDocument): string {
  const clock = new Clock(doc.timeZone, doc.generatedAt);
  const hosts = [...new Set(doc.databases.map((db) => db.host))];
  const where = hosts.length ? ` on ${hosts.join(', ')}` : '';
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>litekeep: ${VERDICT_TEXT[doc.status]}${h(where)}</title>` +
    `<link rel="icon" href="${ASSET_PATHS.icon}" type="image/svg+xml">` +
    `<link rel="stylesheet" href="${ASSET_PATHS.css}">` +
    `<script src="${ASSET_PATHS.js}" defer></script></head><body>` +
    `<a class="skip" href="#main">Skip to the databases</a>` +
    `<header><h1>litekeep<span class="host">${h(where)}</span></h1>${overview(doc, clock)}${actions(doc)}` +
    `<p id="refresh-state" class="note" role="status" aria-live="polite"></p></header>` +
    `<main id="main" tabindex="-1">${doc.databases.map((db) => database(db, clock)).join('')}</main>` +
    `<footer>litekeep ${h(doc.version)} · <a href="/api/status">/api/status</a> (this page as JSON) · ` +
    `<a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></footer>` +
    '</body></html>\n'
  );
}
