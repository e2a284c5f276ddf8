import { humanBytes } from '../util/fs.js';
import { redactUrlsInText } from '../util/redact.js';

/*
 * Everything the CLI prints goes through here, and no URL leaves with its credentials (an endpoint written as
 * http://user:secret@host, an error quoting a presigned URL, an old error in the activity log).
 */

export function printJson(value: unknown): void {
  process.stdout.write(redactUrlsInText(JSON.stringify(value, null, 2)) + '\n');
}

/** JSON for commands that run per database: the object itself for one database, `{ databases }` for several. */
export function printPerDatabaseJson(out: unknown[]): void {
  printJson(out.length === 1 ? out[0] : { databases: out });
}

export function print(line = ''): void {
  process.stdout.write(redactUrlsInText(line) + '\n');
}

export function warn(line: string): void {
  process.stderr.write(`warning: ${redactUrlsInText(line)}\n`);
}

/** Renders rows as aligned columns. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * A one-line progress display on stderr, only when stderr is a terminal: bytes done and rate. Redraws at most
 * a few times a second and clears itself when done.
 */
export class Progress {
  private readonly enabled: boolean;
  private lastDraw = 0;
  private started = Date.now();
  private stage = '';

  constructor(enabled: boolean) {
    this.enabled = enabled && process.stderr.isTTY === true;
  }

  update(stage: string, bytes: number, total?: number): void {
    if (!this.enabled) return;
    if (stage !== this.stage) {
      this.stage = stage;
      this.started = Date.now();
    }
    const now = Date.now();
    if (now - this.lastDraw < 200) return;
    this.lastDraw = now;
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const rate = `${humanBytes(bytes / seconds)}/s`;
    const share = total
      ? ` of ${humanBytes(total)} (${Math.min(100, Math.round((bytes / total) * 100))}%)`
      : '';
    process.stderr.write(`\r\x1b[2K${stage}: ${humanBytes(bytes)}${share}, ${rate}`);
  }

  done(): void {
    if (this.enabled && this.lastDraw) process.stderr.write('\r\x1b[2K');
  }
}

export function age(from: Date, now = new Date()): string {
  const ms = now.getTime() - from.getTime();
  if (ms < 0) return 'in the future';
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

let runsUntilSignalled = false;

/** Marks a command (the daemon) that ends by a signal rather than by returning. */
export function markRunsUntilSignalled(): void {
  runsUntilSignalled = true;
}

export function isRunsUntilSignalled(): boolean {
  return runsUntilSignalled;
}
