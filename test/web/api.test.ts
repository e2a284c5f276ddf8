import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_DIR, CATALOG_FILE } from '../../src/catalog/index.js';
import type { StatusDocument } from '../../src/web/index.js';
import { runCli } from '../helpers/cli.js';
import {
  backupFiles,
  healthUrl,
  killDaemons,
  msg,
  removeDaemonDirs,
  spawnDaemon,
  type DaemonChild,
} from '../integration/daemon-helpers.js';
import { startGate } from '../servers/gate.js';
import { s3DestinationEntry, startS3Server } from '../servers/s3-server.js';
import { SECRETS, statusWorkspace, type StatusWorkspace } from './helpers.js';

const DAY_MS = 86_400_000;
const WRONG_TOKEN = SECRETS.token.slice(0, -1) + (SECRETS.token.endsWith('x') ? 'y' : 'x');

let w: StatusWorkspace;
let daemon: DaemonChild;
let url: string;

beforeAll(async () => {
  w = statusWorkspace({ http: { allowActions: true } });
  for (let i = 0; i < 2; i++) await w.backup('app');
  await w.backup('notes', 'manual');
  daemon = spawnDaemon(['--http', '127.0.0.1:0'], {
    cwd: w.dir,
    env: { LITEKEEP_HTTP_TOKEN: SECRETS.token, LITEKEEP_CATCH_UP: 'false' },
  });
  url = await healthUrl(daemon);
}, 120_000);

afterAll(() => {
  killDaemons();
  removeDaemonDirs();
});

async function status(base = url): Promise<{ response: Response; text: string; doc: StatusDocument }> {
  const response = await fetch(`${base}/api/status`);
  const text = await response.text();
  return { response, text, doc: JSON.parse(text) as StatusDocument };
}

/**
 * Every file under a folder with its size, modification time and sha256: what "wrote nothing" compares. An
 * activity log's `-shm` is only named: it is SQLite's shared-memory index of the WAL, in which every reader
 * (`litekeep status` too) takes its read lock, so its time changes with each reading; it holds no data.
 */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      const rel = path.relative(dir, full);
      if (entry.isDirectory()) {
        out[`${rel}/`] = 'folder';
        walk(full);
      } else if (entry.name.endsWith('-shm')) {
        out[rel] = 'shared-memory index';
      } else {
        const stat = fs.statSync(full);
        const hash = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
        out[rel] = `${stat.size} bytes, mtime ${stat.mtimeMs}, sha256 ${hash}`;
      }
    }
  };
  walk(dir);
  return out;
}

/** Rows per table of an activity log, read through a read-only connection of the test's own. */
function rowCounts(backupDir: string): Record<string, number> {
  const db = new Database(path.join(backupDir, CATALOG_DIR, CATALOG_FILE), { readonly: true });
  try {
    const tables = db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
      .pluck()
      .all() as string[];
    return Object.fromEntries(
      tables.map((t) => [t, db.prepare(`SELECT COUNT(*) FROM "${t}"`).pluck().get() as number]),
    );
  } finally {
    db.close();
  }
}

const post = (headers: Record<string, string> = {}, base = url) =>
  fetch(`${base}/api/backup`, { method: 'POST', headers });

describe('GET /api/status', () => {
  it('answers what each activity log and backup folder hold, with the verdict of /healthz', async () => {
    const { response, text, doc } = await status();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");

    const health = (await (await fetch(`${url}/healthz`)).json()) as { status: string };
    expect(doc).toMatchObject({ service: 'litekeep', timeZone: 'Europe/Berlin', status: health.status });
    expect(doc.status).toBe('degraded');
    expect(doc.actions).toEqual({ backupNow: true });
    const started = await daemon.waitFor(msg('daemon started'));
    expect(doc.schedule).toMatchObject({ expression: '0 3 * * *', nextRun: started.nextRun, running: false });
    expect(doc.databases.map((d) => d.name)).toEqual(['app', 'notes']);

    for (const db of doc.databases) {
      const target = w.target(db.name);
      const catalog = w.catalog(db.name);
      try {
        const runs = catalog.listRuns(1000);
        const backups = catalog.listBackups();
        const since = new Date(new Date(doc.generatedAt).getTime() - 90 * DAY_MS).toISOString();
        expect(db.host).toBe('web1');
        expect(db.lastRun).toMatchObject({
          id: runs[0].id,
          status: runs[0].status,
          startedAt: runs[0].startedAt,
          durationMs: runs[0].durationMs,
          trigger: runs[0].trigger,
        });
        expect(db.newestBackup).toMatchObject({
          file: backups[0].file,
          bytes: backups[0].bytes,
          trigger: backups[0].trigger,
        });
        // The folder and the log agree: every backup on disk, counted and summed.
        const files = backupFiles(target.backupDir);
        expect(db.backups.count).toBe(files.length);
        expect(db.backups.count).toBe(backups.length);
        expect(db.backups.bytes).toBe(
          files.reduce((sum, f) => sum + fs.statSync(path.join(target.backupDir, f)).size, 0),
        );
        // One chart point per backup and per finished run of the window, oldest first.
        expect(db.chart.backups.map((b) => b.file)).toEqual(
          catalog
            .backupsSince(since, 10_000)
            .map((b) => b.file)
            .reverse(),
        );
        expect(db.chart.runs.map((r) => r.id)).toEqual(
          runs
            .filter((r) => r.status !== 'running')
            .map((r) => r.id)
            .reverse(),
        );
        // The activity log, newest first, as `litekeep history` reads it.
        expect(db.activity.map((a) => [a.kind, a.status, a.at])).toEqual(
          catalog.history(50).map((e) => [e.kind, e.status, e.kind === 'run' ? e.startedAt : e.at]),
        );
        // The destination that works holds the newest backup; the one that cannot be reached is marked.
        const usb = db.destinations.find((d) => d.name === 'usb')!;
        const usbOk = catalog.listUploads('usb').filter((u) => u.status === 'ok');
        expect(usb).toMatchObject({
          type: 'local',
          healthy: true,
          missingCount: 0,
          lastAttemptFailed: false,
        });
        expect(usb.newestCopy?.file).toBe(backups[0].file);
        expect(usbOk.map((u) => u.backupFile)).toContain(backups[0].file);
        const bucket = db.destinations.find((d) => d.name === 'bucket')!;
        const lastTry = catalog.listUploads('bucket')[0];
        expect(lastTry.status).toBe('failed');
        expect(bucket).toMatchObject({ type: 's3', healthy: false, lastAttemptFailed: true });
        expect(bucket.newestCopy).toBeUndefined();
        expect(bucket.lastFailure).toMatchObject({ file: lastTry.backupFile, at: lastTry.at });
        expect(bucket.lastFailure?.error).toMatch(/ECONNREFUSED/);
        expect(bucket.reason).toMatch(/last upload failed/);
        // The retention plan covers every local backup; the newest is kept by "last".
        expect(db.retention).toMatchObject({ enabled: true, total: backups.length, remove: 0 });
        expect(db.retention.keep).toBe(backups.length);
        expect(db.retention.backups[0]).toMatchObject({ file: backups[0].file, action: 'keep' });
        expect(db.retention.backups[0].reasons.join(' ')).toMatch(/last 1/);
      } finally {
        catalog.close();
      }
    }
    // No secret of the configuration, in any field.
    for (const secret of [...Object.values(SECRETS), 'AKIAEXAMPLEKEY']) expect(text).not.toContain(secret);
  });
});

describe('viewing changes nothing', () => {
  it('leaves the activity logs, backup folders and destination byte for byte as they were after many views', async () => {
    // Everything the daemon could write to: each database's backup folder (its activity log inside), the
    // destination folder, and the databases themselves.
    const places = [...w.targets.map((t) => t.backupDir), path.join(w.dir, 'usb')];
    const databases = w.targets.map((t) => t.path);
    // Counted first: the test's own read-only connection must not be what the comparison sees.
    const rowsBefore = w.targets.map((t) => rowCounts(t.backupDir));
    const before = places.map(fingerprint);
    const dbBefore = databases.map((f) => fs.readFileSync(f));
    const first = (await status()).doc;
    expect(first.databases.every((db) => db.activity.length > 0)).toBe(true);

    // Many views, several at a time, of every reading path: the page, its JSON, HEAD, the assets.
    const paths = ['/', '/api/status', '/assets/page.js', '/assets/page.css', '/healthz', '/metrics'];
    for (let round = 0; round < 20; round++) {
      const asked = [...paths, '/', '/api/status'];
      const answers = await Promise.all(
        asked.map((p) => fetch(`${url}${p}`).then(async (r) => (await r.text(), r.status))),
      );
      // /healthz says 503 for this workspace (its bucket cannot be reached); everything else is a 200.
      expect(answers).toEqual(asked.map((p) => (p === '/healthz' ? 503 : 200)));
      expect((await fetch(`${url}/`, { method: 'HEAD' })).status).toBe(200);
    }
    const last = (await status()).doc;

    expect(places.map(fingerprint)).toEqual(before);
    databases.forEach((f, i) => expect(fs.readFileSync(f).equals(dbBefore[i])).toBe(true));
    expect(w.targets.map((t) => rowCounts(t.backupDir))).toEqual(rowsBefore);
    // No activity was recorded by looking: the log reads the same, event for event.
    expect(last.databases.map((db) => db.activity)).toEqual(first.databases.map((db) => db.activity));
    expect(last.databases.map((db) => db.lastRun)).toEqual(first.databases.map((db) => db.lastRun));
  });
});

describe('POST /api/backup ("back up now")', () => {
  it('refuses without the token, with a wrong one and with the wrong method; starts one manual run with it', async () => {
    const before = ['app', 'notes'].map((name) => {
      const catalog = w.catalog(name);
      const n = catalog.listRuns(1000).length;
      catalog.close();
      return n;
    });
    const refused = [
      await post(),
      await post({ authorization: `Bearer ${WRONG_TOKEN}` }),
      await post({ authorization: `Bearer ${SECRETS.token}x` }),
      await post({ authorization: 'Bearer short' }),
      await post({ authorization: SECRETS.token }),
      await fetch(`${url}/api/backup?token=${SECRETS.token}`, { method: 'POST' }),
    ];
    for (const r of refused) {
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="litekeep"');
      const body = (await r.json()) as { error: string };
      expect(body.error).toMatch(/needs the token: send Authorization: Bearer/);
    }
    const get = await fetch(`${url}/api/backup`, { headers: { authorization: `Bearer ${SECRETS.token}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');

    const accepted = await post({ authorization: `Bearer ${SECRETS.token}` });
    expect(accepted.status).toBe(202);
    expect(await accepted.json()).toMatchObject({ started: true });
    await daemon.waitFor((r) => r.msg === 'run started' && r.trigger === 'manual', 30_000);
    await daemon.waitFor(msg('run finished'), 90_000);
    // Exactly one run more per database, a person's: the refused requests started nothing.
    ['app', 'notes'].forEach((name, i) => {
      const catalog = w.catalog(name);
      const runs = catalog.listRuns(1000);
      expect(runs.length).toBe(before[i] + 1);
      expect(runs[0]).toMatchObject({ trigger: 'manual', database: name });
      expect(catalog.listBackups()[0].trigger).toBe('manual');
      catalog.close();
    });
    // The wrong tokens were logged as refused; no token, right or wrong, was written anywhere.
    expect(daemon.records.filter(msg('wrong token refused')).length).toBeGreaterThanOrEqual(3);
    for (const token of [SECRETS.token, WRONG_TOKEN]) {
      expect(daemon.stdout()).not.toContain(token);
      expect(daemon.stderr()).not.toContain(token);
    }
  });

  it('does not exist without http.allowActions: 404 even with the token, and no form on the page', async () => {
    const off = statusWorkspace();
    const child = spawnDaemon(['--http', '127.0.0.1:0'], {
      cwd: off.dir,
      env: { LITEKEEP_HTTP_TOKEN: SECRETS.token, LITEKEEP_CATCH_UP: 'false' },
    });
    const base = await healthUrl(child);
    const r = await post({ authorization: `Bearer ${SECRETS.token}` }, base);
    expect(r.status).toBe(404);
    expect((await post({}, base)).status).toBe(404);
    const page = await (await fetch(`${base}/`)).text();
    expect(page).toContain('<section class="database"');
    expect(page).not.toContain('backup-now');
    expect((await status(base)).doc.actions).toEqual({ backupNow: false });
    child.kill();
  });
});

describe('POST /api/backup while a run is going', () => {
  it('answers 409 and starts no second run; the one going finishes', async () => {
    const s3 = await startS3Server();
    const gate = await startGate(s3.endpoint);
    try {
      const busy = statusWorkspace({
        http: { allowActions: true },
        destinations: [
          { name: 'usb', type: 'local', path: 'usb' },
          s3DestinationEntry(s3, { endpoint: gate.endpoint }),
        ],
      });
      // The bucket's first answer waits until the test lets it go: the run stays in its upload meanwhile.
      const held = gate.holdAnswer(() => true);
      const child = spawnDaemon(['--http', '127.0.0.1:0'], {
        cwd: busy.dir,
        env: { LITEKEEP_HTTP_TOKEN: SECRETS.token, LITEKEEP_CATCH_UP: 'false' },
      });
      const base = await healthUrl(child);
      const auth = { authorization: `Bearer ${SECRETS.token}` };

      const first = await post(auth, base);
      expect(first.status).toBe(202);
      await held.arrived;
      const again = [await post(auth, base), await post(auth, base)];
      for (const r of again) {
        expect(r.status).toBe(409);
        expect(await r.json()).toEqual({
          started: false,
          error: 'a backup is running already: wait for it to finish',
        });
      }
      expect((await status(base)).doc.schedule.running).toBe(true);
      expect(child.records.filter(msg('back up now asked for: running'))).toHaveLength(2);

      held.release();
      await child.waitFor(msg('run finished'), 90_000);
      // One run of each database, the one asked for first; the refused requests started none.
      expect(child.records.filter(msg('run started'))).toHaveLength(1);
      for (const name of ['app', 'notes']) {
        const catalog = busy.catalog(name);
        const runs = catalog.listRuns(1000);
        catalog.close();
        expect(runs).toHaveLength(1);
        expect(runs[0]).toMatchObject({ trigger: 'manual', status: 'ok' });
      }
      expect((await status(base)).doc.schedule.running).toBe(false);
      child.kill();
    } finally {
      await gate.close();
      await s3.close();
    }
  });
});

describe('the newest verified backup', () => {
  it('is the newest backup whose newest verification passed, not a newer unverified one nor one that failed since', async () => {
    const v = statusWorkspace({
      retention: { last: 10 },
      destinations: [{ name: 'usb', type: 'local', path: 'usb' }],
    });
    for (let i = 0; i < 4; i++) await v.backup('app');
    const dir = v.target('app').backupDir;
    const [b1, b2, b3, b4] = backupFiles(dir);
    expect(b4).toBeDefined();
    const verify = async (file: string, from: string, code: number) => {
      const r = await runCli(['verify', file, '--db', 'app', '--from', from], { cwd: v.dir });
      expect(r.code, r.stderr).toBe(code);
    };
    await verify(b1, 'local', 0);
    await verify(b2, 'usb', 0);
    // Verified later, but an older backup: the newest verification at usb is not what counts.
    await verify(b1, 'usb', 0);
    // b3 passed once, then its local copy went bad and the next verification found it.
    await verify(b3, 'local', 0);
    const bad = path.join(dir, b3);
    const bytes = fs.readFileSync(bad);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(bad, bytes);
    await verify(b3, 'local', 1);
    // b4, the newest, was never verified.

    const child = spawnDaemon(['--http', '127.0.0.1:0'], {
      cwd: v.dir,
      env: { LITEKEEP_CATCH_UP: 'false' },
    });
    const base = await healthUrl(child);
    const app = (await status(base)).doc.databases.find((d) => d.name === 'app')!;
    expect(app.newestBackup?.file).toBe(b4);
    expect(app.newestVerified).toMatchObject({ file: b2, source: 'usb' });
    const catalog = v.catalog('app');
    const proof = catalog.verdicts('usb').get(b2);
    catalog.close();
    expect(proof?.status).toBe('ok');
    expect(app.newestVerified?.at).toBe(proof?.at);

    const page = await (await fetch(`${base}/`)).text();
    const line = page.match(/<dt>Newest verified backup<\/dt><dd>(.*?)<\/dd>/)?.[1] ?? '';
    expect(line).toContain(`<code>${b2}</code> on usb, verified`);
    for (const other of [b1, b3, b4]) expect(line).not.toContain(other);
    child.kill();
  });
});

describe('the daemon refuses to start (exit 2, one line, the token never shown)', () => {
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    [
      '--allow-remote without a token',
      ['--http', '0.0.0.0:0', '--allow-remote'],
      {},
      /refusing --allow-remote without a token/,
    ],
    [
      'http.allowActions without a token',
      ['--http', '127.0.0.1:0'],
      { LITEKEEP_HTTP_ALLOW_ACTIONS: 'true' },
      /http\.allowActions needs a token/,
    ],
    [
      'a token shorter than 16 characters',
      ['--http', '127.0.0.1:0'],
      { LITEKEEP_HTTP_TOKEN: 'tooShort123' },
      /shorter than 16 characters/,
    ],
  ];
  it.each(cases)('%s', async (_name, args, env, message) => {
    const ws = statusWorkspace();
    const r = await runCli(['daemon', ...args], { cwd: ws.dir, env: { LITEKEEP_CATCH_UP: 'false', ...env } });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^litekeep: /);
    expect(lines[0]).toMatch(message);
    expect(r.stderr + r.stdout).not.toContain('tooShort123');
    expect(r.stdout).not.toMatch(/status page on/);
  });
});
