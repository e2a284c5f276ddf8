import { EXIT, LitekeepError } from './errors.js';

/** A duration that could not be read; a configuration error (exit code 2). */
export class DurationError extends LitekeepError {
  override name = 'DurationError';
  constructor(message: string) {
    super(message, { exitCode: EXIT.usage });
  }
}

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/y;

/**
 * Reads `500ms`, `90s`, `30m`, `26h`, `7d`, `1w`, or a sum such as `1h30m`, into milliseconds. A bare number
 * without a unit is refused on purpose: "10" could mean seconds or minutes, and a wrong guess is silent.
 * A number (not a string) is taken as milliseconds, so config values already converted pass through.
 */
export function parseDuration(value: string | number, what = 'duration'): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return value;
    throw new DurationError(`invalid ${what} ${value}: use a non-negative number of milliseconds`);
  }
  const text = value.trim().toLowerCase().replace(/\s+/g, '');
  let total = 0;
  let index = 0;
  PART.lastIndex = 0;
  while (index < text.length) {
    PART.lastIndex = index;
    const match = PART.exec(text);
    if (!match) {
      index = -1;
      break;
    }
    total += Number(match[1]) * UNIT_MS[match[2]];
    index = PART.lastIndex;
  }
  if (text.length === 0 || index !== text.length || !Number.isFinite(total)) {
    throw new DurationError(
      `invalid ${what} "${value}": use a number followed by ms, s, m, h, d or w (e.g. 500ms, 90s, 30m, 26h, 7d, 1w, 1h30m)`,
    );
  }
  return Math.round(total);
}

/** The inverse for messages: `93784000` → `1d2h3m4s`; under a second → `250ms`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}

/**
 * A configured duration as one would write it: the largest unit that divides it exactly, so that `maxAge: 26h`
 * shows as `26h` (formatDuration would say `1d2h`), `stopTimeout: 10m` as `10m`, 1500 as `1500ms`.
 */
export function durationAsWritten(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
