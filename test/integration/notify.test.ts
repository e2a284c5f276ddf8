import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { runCli } from '../helpers/cli.js';
import { countRows } from '../helpers/db.js';
import { backup, cleanUp, HOST, ntfyEnv, recorder, TOKEN, workspace } from './notify-helpers.js';

afterAll(cleanUp);

/** Page 2 holds the items table: garbage there passes the header check and fails the snapshot. */
function corruptPage(db: string): void {
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096);
  fs.closeSync(fd);
}

/** What a person sees for a duration, as the message shows it. */
const shownDuration = (ms: number) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

describe('notifications from litekeep backup', () => {
  it('ntfy success: method, path, headers and Markdown body', async () => {
    const server = await recorder();
    const w = workspace();
    const r = await backup(w, ntfyEnv(server.url));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.bytes).toBe(8192);
    expect(server.requests).toHaveLength(1);
    const [req] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/litekeep-alerts');
    expect(req.headers).toMatchObject({
      'content-type': 'text/plain; charset=utf-8',
      title: `Backup succeeded: app (${HOST})`,
      priority: 'default',
      tags: 'white_check_mark,floppy_disk,prod',
      markdown: 'yes',
      authorization: `Bearer ${TOKEN}`,
    });
    expect(req.body).toBe(
      [
        `Backup of app on ${HOST} succeeded.`,
        '',
        `- **File:** \`${out.file}\``,
        '- **Size:** 8.0 KiB',
        `- **Local:** \`${out.path}\``,
        '- **Rotated:** 0 old backups removed',
        `- **Duration:** ${shownDuration(out.durationMs)}`,
      ].join('\n'),
    );
    expect(out.notifications).toEqual([
      { channel: 'ntfy', event: 'success', status: 'ok', attempts: 1, httpStatus: 200 },
    ]);
  });

  it('ntfy failure: one-line error, stage, time, priority high', async () => {
    const server = await recorder();
    const w = workspace();
    corruptPage(w.db);
    const r = await backup(w, ntfyEnv(server.url));
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.status).toBe('failed');
    expect(server.requests).toHaveLength(1);
    const [req] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/litekeep-alerts');
    expect(req.headers).toMatchObject({
      title: `Backup FAILED: app (${HOST})`,
      priority: 'high',
      tags: 'rotating_light,floppy_disk,prod',
      markdown: 'yes',
    });
    const lines = req.body.split('\n');
    expect(lines[0]).toBe(`Backup of app on ${HOST} failed at stage ${out.stage}.`);
    expect(out.stage).toMatch(/^(snapshot|integrity)$/);
    expect(lines).toContain(`- **Stage:** ${out.stage}`);
    const errorLine = lines.find((l) => l.startsWith('- **Error:** '))!;
    expect(errorLine).toContain('malformed');
    expect(lines.find((l) => l.startsWith('- **Time:** '))).toMatch(
      /^- \*\*Time:\*\* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/,
    );
  });

  it('webhook: one JSON document per event; ping: start → success, start → fail', async () => {
    const server = await recorder();
    const env = {
      LITEKEEP_TIME_ZONE: 'UTC',
      LITEKEEP_NOTIFY_WEBHOOK_URL: `${server.url}/hooks/3b1f0c9a77e24d1c`,
      LITEKEEP_NOTIFY_PING_URL: `${server.url}/ping/5e2a9c1d-7f3b-4e8a-9d21-0c6b5a4f3e2d`,
    };
    const w = workspace();
    const ok = await backup(w, env);
    expect(ok.code).toBe(0);
    const out = JSON.parse(ok.stdout);
    const ping = '/ping/5e2a9c1d-7f3b-4e8a-9d21-0c6b5a4f3e2d';
    const seen = server.requests.map((q) => `${q.method} ${q.path}`);
    expect(seen[0]).toBe(`GET ${ping}/start`);
    expect(seen.slice(1).sort()).toEqual([`GET ${ping}`, 'POST /hooks/3b1f0c9a77e24d1c'].sort());
    const hook = server.requests.find((q) => q.path.startsWith('/hooks/'))!;
    expect(hook.headers['content-type']).toBe('application/json');
    const doc = JSON.parse(hook.body);
    expect(Object.keys(doc).sort()).toEqual(
      [
        'bytes',
        'database',
        'durationMs',
        'event',
        'failed',
        'file',
        'host',
        'partial',
        'path',
        'rotated',
        'sha256',
        'status',
        'succeeded',
        'text',
        'time',
        'title',
        'version',
      ].sort(),
    );
    expect(doc).toMatchObject({
      event: 'success',
      status: 'ok',
      database: 'app',
      host: HOST,
      file: out.file,
      bytes: out.bytes,
      path: out.path,
      rotated: 0,
      durationMs: out.durationMs,
      sha256: out.sha256,
      succeeded: ['local backup kept'],
      failed: [],
      partial: false,
      title: `Backup succeeded: app (${HOST})`,
    });
    expect(new Date(doc.time).toString()).not.toBe('Invalid Date');

    server.requests.length = 0;
    corruptPage(w.db);
    const failed = await backup(w, env);
    expect(failed.code).toBe(1);
    const seenFail = server.requests.map((q) => `${q.method} ${q.path}`);
    expect(seenFail[0]).toBe(`GET ${ping}/start`);
    expect(seenFail.slice(1).sort()).toEqual([`GET ${ping}/fail`, 'POST /hooks/3b1f0c9a77e24d1c'].sort());
    const failDoc = JSON.parse(server.requests.find((q) => q.path.startsWith('/hooks/'))!.body);
    expect(failDoc).toMatchObject({ event: 'failure', status: 'failed', database: 'app' });
    expect(failDoc.error).toContain('malformed');
    expect(failDoc.error).not.toContain('\n');
  });

  it('retries a receiver that fails twice: one delivery, three attempts in the catalog and history', async () => {
    const server = await recorder((_path, n) => (n <= 2 ? { status: 503, body: 'busy' } : { status: 200 }));
    const w = workspace();
    const r = await backup(w, ntfyEnv(server.url));
    expect(r.code).toBe(0);
    expect(server.requests).toHaveLength(3);
    expect(new Set(server.requests.map((q) => q.body)).size).toBe(1);
    expect(JSON.parse(r.stdout).notifications).toEqual([
      { channel: 'ntfy', event: 'success', status: 'ok', attempts: 3, httpStatus: 200 },
    ]);
    const catalog = Catalog.open(w.backups);
    const attempts = catalog
      .history(50)
      .filter((e) => e.kind === 'notification')
      .reverse() as unknown as { status: string; attempts: number; httpStatus: number }[];
    catalog.close();
    expect(attempts.map((a) => [a.status, a.attempts, a.httpStatus])).toEqual([
      ['failed', 1, 503],
      ['failed', 2, 503],
      ['ok', 3, 200],
    ]);
    const history = await runCli(['history', '--db', w.db, '--dir', w.backups], { cwd: w.dir });
    expect(history.code).toBe(0);
    expect(history.stdout).toContain('notify ntfy (success): ok HTTP 200, 3 attempt(s)');
    expect(history.stdout).toContain('notify ntfy (success): failed HTTP 503, 2 attempt(s) — HTTP 503');
  });

  it('a receiver that hangs times out; the backup is kept and the run exits 3', async () => {
    const server = await recorder(() => 'hang');
    const w = workspace();
    const r = await runCli(['backup', '--db', w.db, '--dir', w.backups, '--compression', 'none'], {
      cwd: w.dir,
      env: { ...ntfyEnv(server.url), LITEKEEP_NOTIFY_ATTEMPTS: '2' },
    });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('notification ntfy (success) FAILED: timed out after 1000 ms');
    expect(r.stdout).toContain('the local backup is safe, but not everything succeeded (exit 3)');
    expect(server.requests).toHaveLength(2);
    const file = /written: (\S+)/.exec(r.stdout)![1];
    expect(countRows(file)).toBe(20);
    const catalog = Catalog.open(w.backups);
    expect(catalog.listRuns(1)[0]).toMatchObject({ status: 'partial', exitCode: 3 });
    catalog.close();
  });
});
