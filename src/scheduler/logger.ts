import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { redactUrlsInText } from '../util/redact.js';

/** The few logging calls the scheduler makes; a pino Logger satisfies it. */
export interface LogSink {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface LoggerOptions {
  /** Human-readable lines instead of JSON; default: when the destination is a terminal. */
  pretty?: boolean;
  level?: LevelWithSilent;
  /** Where lines go (default stdout). Anything with `write(string)`; `isTTY` steers the default of `pretty`. */
  destination?: { write(chunk: string): unknown; isTTY?: boolean };
}

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const LEVEL_COLORS: Record<number, string> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[35m' };
const HIDDEN_KEYS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'err', 'v']);

function formatValue(value: unknown): string {
  if (typeof value === 'string') return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return JSON.stringify(value);
}

function pad2(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/**
 * Turns one pino JSON line into `HH:MM:SS.mmm LEVEL message key=value ...`. pino-pretty is not a dependency:
 * this is all a person at a terminal needs, and journald/pm2 get the JSON.
 */
export function prettyLine(json: string, colors = false): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : json + '\n';
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  const time = new Date(typeof record.time === 'number' ? record.time : Date.now());
  const clock =
    `${pad2(time.getHours())}:${pad2(time.getMinutes())}:${pad2(time.getSeconds())}` +
    `.${pad2(time.getMilliseconds(), 3)}`;
  let label = (LEVEL_NAMES[level] ?? String(level)).padEnd(5);
  if (colors && LEVEL_COLORS[level]) label = `${LEVEL_COLORS[level]}${label}\x1b[0m`;
  const fields = Object.entries(record)
    .filter(([key]) => !HIDDEN_KEYS.has(key))
    .map(([key, value]) => `${key}=${formatValue(value)}`);
  const err = record.err as { message?: string } | undefined;
  if (err && typeof err === 'object' && err.message) fields.push(`error=${JSON.stringify(err.message)}`);
  const message = typeof record.msg === 'string' ? record.msg : '';
  return [clock, label, message, ...fields].filter((part) => part !== '').join(' ') + '\n';
}

class PrettyDestination implements DestinationStream {
  constructor(
    private readonly target: { write(chunk: string): unknown },
    private readonly colors: boolean,
  ) {}
  write(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (line.trim() !== '') this.target.write(prettyLine(line, this.colors));
    }
  }
}

/**
 * The structured logger of the daemon and the CLI: JSON lines (one object per event, for journald, pm2 and
 * log shippers), or readable lines when writing to a terminal. Writes are synchronous so that the last lines
 * before a signal-driven exit are not lost.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const target = options.destination ?? process.stdout;
  const pretty = options.pretty ?? Boolean(target.isTTY);
  const pinoOptions = {
    level: options.level ?? 'info',
    base: { pid: process.pid },
    // Whatever a line holds (an error's message and stack, a URL in a field), no URL credentials get out.
    hooks: { streamWrite: (line: string) => redactUrlsInText(line) },
  };
  if (pretty) return pino(pinoOptions, new PrettyDestination(target, Boolean(target.isTTY)));
  if (options.destination) return pino(pinoOptions, { write: (chunk: string) => target.write(chunk) });
  return pino(pinoOptions, pino.destination({ dest: 1, sync: true }));
}
