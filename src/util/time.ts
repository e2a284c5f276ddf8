/** Calendar parts of an instant as seen in an IANA time zone. */
export interface ZonedParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

export function systemTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** Throws a RangeError for a zone that Intl does not know. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

export function zonedParts(date: Date, timeZone: string): ZonedParts {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(date)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts.year,
    month: parts.month,
    day: parts.day,
    hour: parts.hour === 24 ? 0 : parts.hour,
    minute: parts.minute,
    second: parts.second,
  };
}

/**
 * The instant at which the wall clock in `timeZone` shows `parts`. In a DST gap the later offset wins;
 * in a repeated hour the earlier instant wins.
 */
export function zonedToDate(parts: ZonedParts, timeZone: string): Date {
  const asUtc = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  let guess = asUtc;
  for (let i = 0; i < 3; i++) {
    const seen = zonedParts(new Date(guess), timeZone);
    const seenAsUtc = Date.UTC(seen.year, seen.month - 1, seen.day, seen.hour, seen.minute, seen.second);
    const diff = asUtc - seenAsUtc;
    if (diff === 0) break;
    guess += diff;
  }
  // Prefer the earlier of two instants that show the same wall clock (the repeated hour).
  const earlier = guess - 3600_000;
  const e = zonedParts(new Date(earlier), timeZone);
  if (Date.UTC(e.year, e.month - 1, e.day, e.hour, e.minute, e.second) === asUtc) return new Date(earlier);
  return new Date(guess);
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

export function formatZoned(date: Date, timeZone: string): string {
  const p = zonedParts(date, timeZone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)} ${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}`;
}

/** The one human form of a time in litekeep's output: wall clock in the zone, and the zone (`... 03:00:00 UTC`). */
export function formatTime(date: Date, timeZone: string): string {
  return `${formatZoned(date, timeZone)} ${timeZone}`;
}

export function compactStamp(date: Date, timeZone: string): string {
  const p = zonedParts(date, timeZone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}-${pad(p.hour)}${pad(p.minute)}${pad(p.second)}`;
}

export { pad };
