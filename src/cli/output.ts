import { openProgressLine, type ProgressLine } from './progress.js';
import { redactUrlsInText } from '../util/redact.js';

/*
 * Everything the CLI prints goes through here, and no URL leaves with its credentials (an endpoint written as
 * http://user:secret@host, an error quoting a presigned URL, an old error in the activity log).
 */

export function printJson(value: unknown): void {
  process.stdout.write(redactUrlsInText(JSON.stringify(value, null, 2)) + '\n');
}

/** One JSON document on one line: a stream of events that a reader takes line by line. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(redactUrlsInText(JSON.stringify(value)) + '\n');
}

/** JSON for commands that run per database: the object itself for one database, `{ databases }` for several. */
export function printPerDatabaseJson(out: unknown[]): void {
  printJson(out.length === 1 ? out[0] : { databases: out });
}

let quiet = false;
let progress: ProgressLine | undefined;

/** `--quiet` (for cron): only failures are printed; JSON, when asked for, still is. */
export function setQuiet(value: boolean): void {
  quiet = value;
}

export function isQuiet(): boolean {
  return quiet;
}

/**
 * The progress line of this command's long work: drawn on a terminal only, never with `--json` or `--quiet`.
 * Every message below erases it first, so that no line is ever written over it.
 */
export async function startProgress(options: { json?: boolean }): Promise<ProgressLine> {
  progress?.done();
  progress = await openProgressLine(!options.json && !quiet);
  return progress;
}

export function print(line = ''): void {
  if (quiet) return;
  progress?.clear();
  process.stdout.write(redactUrlsInText(line) + '\n');
}

/** The one prefix of everything litekeep says on stderr. */
export const PREFIX = 'litekeep: ';

export function warn(line: string): void {
  if (quiet) return;
  progress?.clear();
  process.stderr.write(`${PREFIX}warning: ${redactUrlsInText(line)}\n`);
}

/** An error, on stderr, also under `--quiet`. */
export function printError(line: string): void {
  progress?.clear();
  process.stderr.write(`${PREFIX}${redactUrlsInText(line)}\n`);
}

/**
 * A line of a report that says something failed: printed with the report, and under `--quiet` (where the
 * report is not) as an error that names what it is about.
 */
export function printFailure(reportLine: string, errorLine: string): void {
  if (quiet) printError(errorLine);
  else print(reportLine);
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
