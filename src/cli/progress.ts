import { createLogUpdate } from 'log-update';
import { humanBytes, humanDuration } from '../util/fs.js';

export interface ProgressState {
  /** What is being done: `snapshot`, `compress`, `upload to offsite`, `verify backup-...`. */
  label: string;
  bytes: number;
  /** The size of the whole job, when known. */
  total?: number;
  elapsedMs: number;
}

/** Below this much time a rate says nothing yet. */
const RATE_AFTER_MS = 250;

/** The progress line: `compress  45%  12.3 MiB of 27.0 MiB  35.1 MiB/s  ETA 2.1 s`. Pure, for tests. */
export function formatProgress(state: ProgressState): string {
  const { label, bytes, total, elapsedMs } = state;
  const parts = [label];
  if (total && total > 0) {
    const share = Math.min(1, bytes / total);
    parts.push(
      `${String(Math.floor(share * 100)).padStart(3)}%`,
      `${humanBytes(bytes)} of ${humanBytes(total)}`,
    );
  } else parts.push(humanBytes(bytes));
  if (elapsedMs >= RATE_AFTER_MS && bytes > 0) {
    const rate = bytes / (elapsedMs / 1000);
    parts.push(`${humanBytes(rate)}/s`);
    if (total && total > bytes) parts.push(`ETA ${humanDuration(((total - bytes) / rate) * 1000)}`);
  }
  return parts.join('  ');
}

/** How often the line is redrawn at most. */
const REDRAW_MS = 100;

/**
 * One progress line on stderr for long work, drawn only on a terminal (never into a pipe, a log or `--json`
 * output). log-update does the drawing and erasing; `clear()` takes the line away before any other message.
 */
export class ProgressLine {
  private readonly render?: ReturnType<typeof createLogUpdate>;
  private label = '';
  private started = 0;
  private lastDraw = 0;
  private shown = false;

  constructor(enabled: boolean, stream: NodeJS.WriteStream = process.stderr) {
    if (enabled && stream.isTTY === true) this.render = createLogUpdate(stream, { showCursor: true });
  }

  get enabled(): boolean {
    return this.render !== undefined;
  }

  update(label: string, bytes: number, total?: number): void {
    if (!this.render) return;
    const now = Date.now();
    if (label !== this.label) {
      this.label = label;
      this.started = now;
      this.lastDraw = 0;
    }
    // The first frame of a stage at once, then a few a second; the last one (all done) always.
    const finished = total !== undefined && bytes >= total;
    if (this.lastDraw && now - this.lastDraw < REDRAW_MS && !finished) return;
    this.lastDraw = now;
    this.render(formatProgress({ label, bytes, total, elapsedMs: now - this.started }));
    this.shown = true;
  }

  /** Erases the line (the next update draws it again). */
  clear(): void {
    if (!this.render || !this.shown) return;
    this.render.clear();
    this.shown = false;
  }

  done(): void {
    this.clear();
    this.label = '';
  }
}
