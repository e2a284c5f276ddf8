import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LitekeepError } from '../util/errors.js';
import {
  removeSnapshotLeftovers,
  type SnapshotFacts,
  type SnapshotFailure,
  type SnapshotRequest,
} from './engine.js';
import { assertSqliteFile } from './inspect.js';

export interface SnapshotOptions {
  signal?: AbortSignal;
  /** Bytes of the copy written so far, reported a few times a second. */
  onProgress?: (bytes: number) => void;
  /** Called once the copy is complete and fsynced, while its integrity check is still running. */
  onCopied?: () => void;
}

function childEntry(): { file: string; execArgv: string[] } {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const js = path.join(here, 'child.js');
  if (fs.existsSync(js)) return { file: js, execArgv: [] };
  // Running from TypeScript sources (tests): let tsx load the child.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return { file: path.join(here, 'child.ts'), execArgv: ['--import', tsx] };
}

function explain(failure: SnapshotFailure, request: SnapshotRequest): LitekeepError {
  const code = failure.code ?? '';
  const dir = path.dirname(request.target);
  const make = (message: string, exitCode = 1) => new LitekeepError(message, { exitCode, stage: 'snapshot' });
  if (
    code === 'SQLITE_BUSY' ||
    code.startsWith('SQLITE_BUSY') ||
    /database is locked/.test(failure.message)
  ) {
    return make(
      `database ${request.source} is locked by another process (waited ${Math.round(request.busyTimeoutMs / 1000)} s); ` +
        `retry when its writer is done, or raise busyTimeout`,
    );
  }
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || /disk is full|ENOSPC/i.test(failure.message)) {
    return make(`disk full while writing the backup into ${dir}; free space there or choose another --dir`);
  }
  if (code === 'SQLITE_NOTADB') {
    return make(`${request.source} is not a SQLite database (file is not a database); check the path`, 2);
  }
  if (code.startsWith('SQLITE_CORRUPT')) {
    return make(
      `source database ${request.source} is corrupt (${failure.message}); repair it before backing up`,
    );
  }
  if (code.startsWith('SQLITE_CANTOPEN') && /VACUUM|backup/i.test(failure.message + code)) {
    return make(`cannot create the backup file in ${dir}; check that the folder is writable`);
  }
  if (
    code.startsWith('SQLITE_IOERR') ||
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_CANTOPEN')
  ) {
    return make(
      `cannot write the backup into ${dir} (${code}: ${failure.message}); check the folder and free space`,
    );
  }
  return make(`snapshot of ${request.source} failed: ${failure.message}${code ? ` (${code})` : ''}`);
}

/**
 * Takes a consistent, checked copy of a live database into `request.target`, in a child process.
 * On any failure or abort the partial copy is removed.
 */
export function takeSnapshot(
  request: SnapshotRequest,
  options: SnapshotOptions = {},
): Promise<SnapshotFacts> {
  assertSqliteFile(request.source);
  const { file, execArgv } = childEntry();
  return new Promise<SnapshotFacts>((resolve, reject) => {
    let settled = false;
    const child = fork(file, [], {
      execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    const progress = options.onProgress
      ? setInterval(() => {
          try {
            options.onProgress!(fs.statSync(request.target).size);
          } catch {
            // not created yet
          }
        }, 250)
      : undefined;
    const finish = (error?: Error, facts?: SnapshotFacts) => {
      if (settled) return;
      settled = true;
      if (progress) clearInterval(progress);
      options.signal?.removeEventListener('abort', onAbort);
      if (error) {
        removeSnapshotLeftovers(request.target);
        reject(error);
      } else resolve(facts!);
    };
    const onAbort = () => {
      child.kill('SIGKILL');
      finish(new LitekeepError('backup aborted; the partial copy was removed', { stage: 'snapshot' }));
    };
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on(
      'message',
      (message: { ok: boolean; phase?: string; facts?: SnapshotFacts; failure?: SnapshotFailure }) => {
        if (message.phase === 'copied') {
          if (progress) clearInterval(progress);
          options.onCopied?.();
          return;
        }
        if (message.ok) finish(undefined, message.facts);
        else finish(explain(message.failure!, request));
      },
    );
    child.on('error', (error) =>
      finish(new LitekeepError(`cannot start the snapshot process: ${error.message}`)),
    );
    // 'close', not 'exit': the child's last IPC message may still be on its way when 'exit' fires.
    child.on('close', (code, signal) => {
      const last = stderr.trim().split('\n').pop() ?? '';
      finish(
        new LitekeepError(
          `snapshot process ended unexpectedly (${signal ?? `exit ${code}`})${last ? `: ${last}` : ''}`,
          { stage: 'snapshot' },
        ),
      );
    });
    child.send(request);
  });
}
