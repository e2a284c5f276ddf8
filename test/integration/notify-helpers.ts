import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
