import { formatZoned } from '../util/time.js';
import { escapeHtml } from './html.js';

export interface ChartPoint {
  /** Milliseconds since the epoch. */
  time: number;
  value: number;
  /** The point's tooltip (its `<title>`). */
  label: string;
  /** Drawn apart (a failed run). */
  failed?: boolean;
}

export interface ChartOptions {
  /** Unique on the page: names the title and description for assistive technology. */
  id: string;
  title: string;
  from: number;
  to: number;
  timeZone: string;
  formatValue: (value: number) => string;
  /** What the points are, for the text description ("backups", "runs"). */
  noun: string;
}

const WIDTH = 720;
const HEIGHT = 200;
const LEFT = 78;
const RIGHT = 12;
const TOP = 12;
const BOTTOM = 28;

const round = (n: number) => Math.round(n * 10) / 10;

/** The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`: a readable top of the axis. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/**
 * A scatter chart over time as inline SVG, drawn by the server: no script, no fonts or files to load. One
 * `<circle class="point">` per point, each with its value as a tooltip; a text description for screen readers.
 */
export function scatterChart(points: ChartPoint[], options: ChartOptions): string {
  const { id, from, to } = options;
  const span = Math.max(1, to - from);
  const max = niceCeiling(Math.max(0, ...points.map((p) => p.value)));
  const x = (t: number) => round(LEFT + ((t - from) / span) * (WIDTH - LEFT - RIGHT));
  const y = (v: number) => round(TOP + (1 - v / max) * (HEIGHT - TOP - BOTTOM));
  const day = (t: number) => formatZoned(new Date(t), options.timeZone).slice(0, 10);
  const values = points.map((p) => p.value);
  const failed = points.filter((p) => p.failed).length;
  const description = points.length
    ? `${points.length} ${options.noun} from ${day(points[0].time)} to ${day(points[points.length - 1].time)}, ` +
      `between ${options.formatValue(Math.min(...values))} and ${options.formatValue(Math.max(...values))}` +
      (failed ? `; ${failed} failed` : '')
    : `no ${options.noun} in this window`;
  const parts: string[] = [
    `<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${id}-title ${id}-desc" data-points="${points.length}">`,
    `<title id="${id}-title">${escapeHtml(options.title)}</title>`,
    `<desc id="${id}-desc">${escapeHtml(description)}</desc>`,
  ];
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    parts.push(
      `<line class="grid" x1="${LEFT}" x2="${WIDTH - RIGHT}" y1="${y(value)}" y2="${y(value)}"/>`,
      `<text class="axis" x="${LEFT - 6}" y="${y(value) + 4}" text-anchor="end">${escapeHtml(options.formatValue(value))}</text>`,
    );
  }
  for (const [t, anchor] of [
    [from, 'start'],
    [from + span / 2, 'middle'],
    [to, 'end'],
  ] as const) {
    parts.push(
      `<text class="axis" x="${x(t)}" y="${HEIGHT - 8}" text-anchor="${anchor}">${escapeHtml(day(t))}</text>`,
    );
  }
  if (points.length > 1) {
    parts.push(
      `<polyline class="trend" points="${points.map((p) => `${x(p.time)},${y(p.value)}`).join(' ')}"/>`,
    );
  }
  for (const p of points) {
    parts.push(
      `<circle class="point${p.failed ? ' failed' : ''}" cx="${x(p.time)}" cy="${y(p.value)}" r="3.5"><title>${escapeHtml(p.label)}</title></circle>`,
    );
  }
  if (points.length === 0) {
    parts.push(
      `<text class="empty" x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle">${escapeHtml(description)}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}
