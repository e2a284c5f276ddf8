import { redactUrlsInText } from './redact.js';

/** Exit codes (BRIEF §4): 0 success, 1 the job failed, 2 bad usage or configuration, 3 partly done. */
export const EXIT = { ok: 0, failed: 1, usage: 2, partial: 3 } as const;

/**
 * An error meant for the user: one line that names the cause and the fix. `stage` says which step of a run
 * failed (snapshot, integrity, store, upload, prune, notify, restore, ...).
 */
export class LitekeepError extends Error {
  override name = 'LitekeepError';
  readonly exitCode: number;
  readonly stage?: string;
  constructor(message: string, options: { exitCode?: number; stage?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.exitCode = options.exitCode ?? EXIT.failed;
    this.stage = options.stage;
  }
}

/**
 * First line of an error's message, without stack or nested causes, and with the credentials of any URL in it
 * masked: this is the text that is printed, logged, notified and stored in the activity log.
 */
export function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return redactUrlsInText(message.split('\n')[0].trim());
}

export function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
