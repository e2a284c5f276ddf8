import { redactSecrets } from '../util/redact.js';
import { oneLineError } from './message.js';
import type {
  ChannelName,
  EventKind,
  HttpRequestSpec,
  NotificationAttempt,
  NotificationResult,
} from './types.js';

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF_MS = [2_000, 8_000];

export interface DeliveryOptions {
  channel: ChannelName;
  event: EventKind;
  /** Already redacted. */
  target: string;
  secrets: string[];
  timeoutMs?: number;
  attempts?: number;
  backoffMs?: number[];
  onAttempt?: (attempt: NotificationAttempt) => void;
}

interface TryOutcome {
  ok: boolean;
  retry: boolean;
  httpStatus?: number;
  error?: string;
}

/** A 4xx other than 408/425/429 means the request itself is wrong (bad token, unknown topic): retrying won't help. */
function retryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

function describeFetchError(error: unknown, timeoutMs: number): string {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError')
      return `timed out after ${timeoutMs} ms`;
    // undici says only "fetch failed"; the cause holds the useful part (ECONNREFUSED, ENOTFOUND, ...).
    const cause = (error as Error & { cause?: unknown }).cause;
    if (cause instanceof Error && cause.message) return `${error.message}: ${cause.message}`;
    return error.message;
  }
  return String(error);
}

async function tryOnce(request: HttpRequestSpec, timeoutMs: number): Promise<TryOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal,
      // Following a redirect could hand custom secret headers to another host; a moved endpoint is a
      // configuration problem the user should fix.
      redirect: 'manual',
    });
    const text = (await response.text().catch(() => '')).slice(0, 65_536);
    if (response.status >= 200 && response.status < 300)
      return { ok: true, retry: false, httpStatus: response.status };
    if (response.status >= 300 && response.status < 400) {
      return {
        ok: false,
        retry: false,
        httpStatus: response.status,
        error: `HTTP ${response.status}: redirected to ${response.headers.get('location') ?? '(no location)'}; configure the final URL`,
      };
    }
    // Not shortened here: a secret cut in half would escape redaction; oneLineError shortens afterwards.
    const detail = text.trim() ? `: ${text.trim()}` : '';
    return {
      ok: false,
      retry: retryableStatus(response.status),
      httpStatus: response.status,
      error: `HTTP ${response.status} ${response.statusText}`.trim() + detail,
    };
  } catch (error) {
    return { ok: false, retry: true, error: describeFetchError(error, timeoutMs) };
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Sends one request with timeout and backoff. Never throws: failures come back as a failed result. */
export async function deliver(
  request: HttpRequestSpec,
  options: DeliveryOptions,
): Promise<NotificationResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxAttempts = Math.max(1, Math.floor(options.attempts ?? DEFAULT_ATTEMPTS));
  const backoff = options.backoffMs?.length ? options.backoffMs : DEFAULT_BACKOFF_MS;
  const log: NotificationAttempt[] = [];
  let last: TryOutcome = { ok: false, retry: false };

  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const time = new Date();
    last = await tryOnce(request, timeoutMs);
    const record: NotificationAttempt = {
      channel: options.channel,
      event: options.event,
      status: last.ok ? 'ok' : 'failed',
      httpStatus: last.httpStatus,
      error: last.error !== undefined ? oneLineError(redactSecrets(last.error, options.secrets)) : undefined,
      attempt,
      time,
      target: options.target,
    };
    log.push(record);
    report(options.onAttempt, record);
    if (last.ok || !last.retry || attempt === maxAttempts) break;
    await sleep(backoff[Math.min(attempt - 1, backoff.length - 1)]);
  }

  const final = log[log.length - 1];
  return {
    channel: options.channel,
    event: options.event,
    status: final.status,
    attempts: log.length,
    httpStatus: final.httpStatus,
    error: final.error,
    target: options.target,
    attemptLog: log,
  };
}

/** A broken logger must not turn a notification problem into a crash of the backup run. */
export function report(
  onAttempt: ((attempt: NotificationAttempt) => void) | undefined,
  attempt: NotificationAttempt,
): void {
  try {
    onAttempt?.(attempt);
  } catch {
    // deliberately ignored, see above
  }
}
