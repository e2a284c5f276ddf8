import { Readable, Transform, type TransformCallback } from 'node:stream';
import { formatDuration } from './duration.js';
import { EXIT, LitekeepError } from './errors.js';

/** Fires `onIdle` once when `touch()` was not called for `ms`. Timers are unref'd: they never keep a process up. */
export interface IdleTimer {
  touch(): void;
  stop(): void;
}

export function idleTimer(ms: number, onIdle: () => void): IdleTimer {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = () => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      stopped = true;
      onIdle();
    }, ms);
    timer.unref();
  };
  arm();
  return {
    touch: arm,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** A pass-through that counts every chunk as activity of `timer`. */
export function touchingStream(timer: IdleTimer): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      timer.touch();
      callback(null, chunk);
    },
  });
}

/**
 * A request body that counts as activity each time the HTTP client takes more of it: the client takes it as
 * fast as the socket drains, so a server that stops reading stops the touches.
 */
export function touchingBody(data: Buffer, timer: IdleTimer, slice = 64 * 1024): Readable {
  let offset = 0;
  return new Readable({
    read() {
      timer.touch();
      if (offset >= data.length) {
        this.push(null);
        return;
      }
      const end = Math.min(offset + slice, data.length);
      this.push(data.subarray(offset, end));
      offset = end;
    },
  });
}

/** Why a run was stopped by its ceiling: the message names the setting and what to do. */
export class RunTimeoutError extends LitekeepError {
  override name = 'RunTimeoutError';
  constructor(
    readonly what: string,
    readonly limitMs: number,
  ) {
    super(
      `${what} was still going after runTimeout ${formatDuration(limitMs)} and was aborted; find what it waits ` +
        `for (idleTimeout bounds each network wait), or raise runTimeout when runs are simply that long`,
      { exitCode: EXIT.failed },
    );
  }
}

export interface RunCeiling {
  /** Fires when the caller's signal does, or when the ceiling is reached. */
  readonly signal: AbortSignal;
  /** The error the ceiling fired with, once it has. */
  readonly expired: RunTimeoutError | undefined;
  dispose(): void;
}

/** A signal for one whole run: the caller's, plus an abort after `limitMs` (none when undefined). */
export function runCeiling(what: string, limitMs: number | undefined, parent?: AbortSignal): RunCeiling {
  const controller = new AbortController();
  let expired: RunTimeoutError | undefined;
  const onParent = () => controller.abort(parent?.reason);
  if (parent?.aborted) onParent();
  else parent?.addEventListener('abort', onParent, { once: true });
  let timer: NodeJS.Timeout | undefined;
  if (limitMs !== undefined && Number.isFinite(limitMs) && limitMs > 0) {
    timer = setTimeout(() => {
      expired = new RunTimeoutError(what, limitMs);
      controller.abort(expired);
    }, limitMs);
    timer.unref();
  }
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    dispose() {
      clearTimeout(timer);
      parent?.removeEventListener('abort', onParent);
    },
  };
}

/** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
