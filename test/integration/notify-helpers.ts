import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli.js';
import { makeDatabase, tempDir } from '../helpers/db.js';
import { startRecorder, type Recorder, type RecorderResponse } from '../servers/http-recorder.js';

const cleanups: (() => Promise<void> | void)[] = [];

/** Closes the recorders and removes the folders made here; call it from the test file's afterAll. */
export async function cleanUp(): Promise<void> {
  for (const f of cleanups.splice(0)) await f();
}

export const TOKEN = 'tk_9f8e7d6c5b4a3f2e1d0c';
export const HOST = os.hostname();

/** A recording HTTP server on loopback; `respond` gets the request path and its 1-based number. */
export async function recorder(respond?: (path: string, n: number) => RecorderResponse): Promise<Recorder> {
  const r = await startRecorder({ respond: respond && ((req, n) => respond(req.path, n)) });
  cleanups.push(() => r.close());
  return r;
}

export function workspace() {
  const dir = tempDir('litekeep-notify-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const db = path.join(dir, 'app.db');
  makeDatabase(db, 20);
  return { dir, db, backups: path.join(dir, 'backups') };
}

/** Environment that sends ntfy messages (with a token) to `server`, with short timeouts and backoff. */
export function ntfyEnv(server: string): Record<string, string> {
  return {
    LITEKEEP_TIME_ZONE: 'UTC',
    LITEKEEP_NOTIFY_NTFY_SERVER: server,
    LITEKEEP_NOTIFY_NTFY_TOPIC: 'litekeep-alerts',
    LITEKEEP_NOTIFY_NTFY_TOKEN: TOKEN,
    LITEKEEP_NOTIFY_NTFY_TAGS: 'floppy_disk,prod',
    LITEKEEP_NOTIFY_TIMEOUT: '1s',
    LITEKEEP_NOTIFY_BACKOFF_MS: '50,50',
  };
}

/** `litekeep backup --json` of the workspace's database into its folder. */
export const backup = (w: ReturnType<typeof workspace>, env: Record<string, string>, ...args: string[]) =>
  runCli(['backup', '--db', w.db, '--dir', w.backups, '--compression', 'none', '--json', ...args], {
    cwd: w.dir,
    env,
  });
