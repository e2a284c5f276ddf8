import { afterEach, describe, expect, it } from 'vitest';
import {
  notify,
  notifyTest,
  type NotificationAttempt,
  type NotifyOptions,
  type RunEvent,
} from '../../src/notify/index.js';
import { startRecorder, type Recorder, type RecorderResponse } from '../servers/http-recorder.js';

const open: Recorder[] = [];
async function recorder(respond?: (req: unknown, n: number) => RecorderResponse): Promise<Recorder> {
  const r = await startRecorder({ respond });
  open.push(r);
  return r;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** Small values so retries and timeouts take milliseconds; the shape is what is under test. */
const fast = { timeoutMs: 2_000, attempts: 3, backoffMs: [5, 20], version: '1.2.3', timeZone: 'UTC' };

const time = new Date('2026-03-01T03:00:12Z');
const success: RunEvent = {
  kind: 'success',
  database: 'app',
  host: 'db1',
  time,
  file: 'backup-2026-03-01-030000.db.zst',
  bytes: 1536,
  path: '/var/backups/app/backup-2026-03-01-030000.db.zst',
  link: 'https://drive.google.com/file/d/abc123/view',
  rotated: 1,
  durationMs: 850,
  sha256: 'ab'.repeat(32),
};
const failure: RunEvent = {
  kind: 'failure',
  database: 'app',
  host: 'db1',
  time,
  error: 'Drive API returned 403: insufficient permissions\n    at upload (drive.js:10:5)',
  stage: 'upload',
  succeeded: ['local backup kept'],
  failed: ['Drive upload failed'],
};

describe('ntfy', () => {
  it('publishes a success with token auth, click action and Markdown', async () => {
    const server = await recorder();
    const results = await notify(success, {
      ...fast,
      ntfy: { server: server.url, topic: 'backups', token: 'tk_0123456789', tags: ['db', 'nightly'] },
    });

    expect(results).toMatchObject([
      { channel: 'ntfy', event: 'success', status: 'ok', attempts: 1, httpStatus: 200 },
    ]);
    expect(server.requests).toHaveLength(1);
    const [req] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/backups');
    expect(req.headers).toMatchObject({
      title: 'Backup succeeded: app (db1)',
      priority: 'default',
      tags: 'white_check_mark,db,nightly',
      click: 'https://drive.google.com/file/d/abc123/view',
      markdown: 'yes',
      authorization: 'Bearer tk_0123456789',
      'content-type': 'text/plain; charset=utf-8',
      'user-agent': 'litekeep/1.2.3',
    });
    expect(req.body).toBe(
      [
        'Backup of app on db1 succeeded.',
        '',
        '- **File:** `backup-2026-03-01-030000.db.zst`',
        '- **Size:** 1.5 KiB',
        '- **Local:** `/var/backups/app/backup-2026-03-01-030000.db.zst`',
        '- **Drive:** [open](https://drive.google.com/file/d/abc123/view)',
        '- **Rotated:** 1 old backup removed',
        '- **Duration:** 850 ms',
      ].join('\n'),
    );
  });

  it('publishes a failure at high priority with Basic auth and no click action', async () => {
    const server = await recorder();
    await notify(failure, {
      ...fast,
      ntfy: { server: `${server.url}/`, topic: 'backups', user: 'alice', password: 'pw-alice-123' },
    });

    const [req] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/backups');
    expect(req.headers).toMatchObject({
      title: 'Backup FAILED: app (db1)',
      priority: 'high',
      tags: 'rotating_light',
      markdown: 'yes',
      authorization: `Basic ${Buffer.from('alice:pw-alice-123').toString('base64')}`,
    });
    expect(req.headers.click).toBeUndefined();
    expect(req.body).toBe(
      [
        'Backup of app on db1 failed at stage upload.',
        '',
        '- **Error:** `Drive API returned 403: insufficient permissions`',
        '- **Stage:** upload',
        '- **Time:** 2026-03-01 03:00:12 UTC',
        '- **Outcome:** local backup kept, Drive upload failed',
      ].join('\n'),
    );
  });

  it('uses the configured priorities per event', async () => {
    const server = await recorder();
    const ntfy = { server: server.url, topic: 't', priority: 'low', failurePriority: '5' };
    await notify(success, { ...fast, ntfy });
    await notify(failure, { ...fast, ntfy });
    expect(server.requests.map((r) => r.headers.priority)).toEqual(['low', '5']);
  });
});

describe('webhook', () => {
  it('POSTs one JSON document with every field, the version, and the configured headers', async () => {
    const server = await recorder();
    const results = await notify(success, {
      ...fast,
      webhook: { url: `${server.url}/hook`, headers: { 'X-Api-Key': 'key-abcdef-123' } },
    });

    expect(results).toMatchObject([{ channel: 'webhook', status: 'ok', attempts: 1 }]);
    const [req] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/hook');
    expect(req.headers).toMatchObject({
      'content-type': 'application/json',
      'x-api-key': 'key-abcdef-123',
      'user-agent': 'litekeep/1.2.3',
    });
    expect(JSON.parse(req.body)).toEqual({
      event: 'success',
      status: 'ok',
      database: 'app',
      host: 'db1',
      time: '2026-03-01T03:00:12.000Z',
      version: '1.2.3',
      title: 'Backup succeeded: app (db1)',
      text: [
        'Backup of app on db1 succeeded.',
        'File: backup-2026-03-01-030000.db.zst',
        'Size: 1.5 KiB',
        'Local: /var/backups/app/backup-2026-03-01-030000.db.zst',
        'Drive: https://drive.google.com/file/d/abc123/view',
        'Rotated: 1 old backup removed',
        'Duration: 850 ms',
      ].join('\n'),
      file: 'backup-2026-03-01-030000.db.zst',
      bytes: 1536,
      path: '/var/backups/app/backup-2026-03-01-030000.db.zst',
      link: 'https://drive.google.com/file/d/abc123/view',
      rotated: 1,
      durationMs: 850,
      sha256: 'ab'.repeat(32),
      partial: false,
    });
  });

  it('carries error, stage and outcome for a failure', async () => {
    const server = await recorder();
    await notify(failure, { ...fast, webhook: { url: server.url } });
    const body = JSON.parse(server.requests[0].body);
    expect(body).toMatchObject({
      event: 'failure',
      status: 'failed',
      error: failure.error,
      stage: 'upload',
      succeeded: ['local backup kept'],
      failed: ['Drive upload failed'],
    });
    expect(body.partial).toBeUndefined();
  });
});

describe('dead-man ping', () => {
  it('start then success: GET /start, then the bare URL', async () => {
    const server = await recorder();
    const options: NotifyOptions = { ...fast, ping: { url: `${server.url}/ping/0f6b3f7e-uuid` } };
    await notify({ ...success, kind: 'start' }, options);
    await notify(success, options);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /ping/0f6b3f7e-uuid/start',
      'GET /ping/0f6b3f7e-uuid',
    ]);
  });

  it('start then failure with POST: /start, then /fail carrying the summary', async () => {
    const server = await recorder();
    const options: NotifyOptions = {
      ...fast,
      ping: { url: `${server.url}/ping/0f6b3f7e-uuid`, method: 'POST' },
    };
    const started = await notify({ ...failure, kind: 'start' }, options);
    const failed = await notify(failure, options);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'POST /ping/0f6b3f7e-uuid/start',
      'POST /ping/0f6b3f7e-uuid/fail',
    ]);
    expect(server.requests[1].body).toContain('Error: Drive API returned 403: insufficient permissions');
    // The UUID is a capability: results show the origin only.
    expect(started[0].target).toBe(`${server.url}/***`);
    expect(JSON.stringify([started, failed])).not.toContain('0f6b3f7e-uuid');
  });
});

describe('when to send', () => {
  it('start goes to the ping only; on: failure skips a clean success but not a partial one', async () => {
    const server = await recorder();
    const options: NotifyOptions = {
      ...fast,
      ntfy: { server: server.url, topic: 'n', on: 'failure' },
      webhook: { url: `${server.url}/w`, on: 'never' },
      ping: { url: `${server.url}/p` },
    };

    const start = await notify({ ...success, kind: 'start' }, options);
    expect(start.map((r) => r.channel)).toEqual(['ping']);

    const ok = await notify(success, options);
    expect(ok.map((r) => `${r.channel}:${r.status}`)).toEqual(['ntfy:skipped', 'webhook:skipped', 'ping:ok']);

    const partial = await notify({ ...success, failed: ['Drive upload failed'] }, options);
    expect(partial.map((r) => `${r.channel}:${r.status}`)).toEqual(['ntfy:ok', 'webhook:skipped', 'ping:ok']);

    expect(server.requests.map((r) => r.path)).toEqual(['/p/start', '/p', '/n', '/p/fail']);
  });

  it('notifyTest reaches every configured channel, whatever its on setting', async () => {
    const server = await recorder();
    const results = await notifyTest(
      {
        ...fast,
        ntfy: { server: server.url, topic: 'n', on: 'never' },
        webhook: { url: `${server.url}/w`, on: 'failure' },
        ping: { url: `${server.url}/p` },
      },
      {},
      { host: 'db1' },
    );
    expect(results.map((r) => `${r.channel}:${r.event}:${r.status}`)).toEqual([
      'ntfy:test:ok',
      'webhook:test:ok',
      'ping:test:ok',
    ]);
    const byPath = Object.fromEntries(server.requests.map((r) => [r.path, r]));
    expect(Object.keys(byPath).sort()).toEqual(['/n', '/p/log', '/w']);
    expect(byPath['/n'].headers).toMatchObject({
      title: 'litekeep test notification (db1)',
      tags: 'test_tube',
    });
    expect(JSON.parse(byPath['/w'].body)).toMatchObject({ event: 'test', status: 'test', host: 'db1' });
  });
});

describe('never in the way', () => {
  it('a receiver that fails twice then succeeds: one delivery, three attempts reported', async () => {
    const server = await recorder((_req, n) => (n <= 2 ? { status: 503, body: 'busy' } : { status: 200 }));
    const seen: NotificationAttempt[] = [];
    const results = await notify(
      success,
      { ...fast, webhook: { url: `${server.url}/hook` } },
      { onAttempt: (a) => seen.push(a) },
    );

    expect(server.requests).toHaveLength(3);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'ok', attempts: 3, httpStatus: 200 });
    expect(seen.map((a) => [a.attempt, a.status, a.httpStatus, a.error])).toEqual([
      [1, 'failed', 503, 'HTTP 503 Service Unavailable: busy'],
      [2, 'failed', 503, 'HTTP 503 Service Unavailable: busy'],
      [3, 'ok', 200, undefined],
    ]);
    expect(results[0].attemptLog).toEqual(seen);
    for (const a of seen) {
      expect(a).toMatchObject({ channel: 'webhook', event: 'success', target: `${server.url}/***` });
      expect(a.time).toBeInstanceOf(Date);
    }
  });

  it('a receiver that hangs: every try times out, notify resolves with a failed result', async () => {
    const server = await recorder(() => 'hang');
    const results = await notify(success, {
      ...fast,
      timeoutMs: 150,
      attempts: 2,
      ntfy: { server: server.url, topic: 'n' },
    });
    expect(server.requests).toHaveLength(2);
    expect(results).toMatchObject([
      { channel: 'ntfy', status: 'failed', attempts: 2, error: 'timed out after 150 ms' },
    ]);
    expect(results[0].httpStatus).toBeUndefined();
  });

  it('a dropped connection is retried; a 401 is not', async () => {
    const dropping = await recorder((_req, n) => (n === 1 ? 'destroy' : { status: 200 }));
    const denying = await recorder(() => ({ status: 401, body: '{"error":"unauthorized"}' }));
    const [dropped, denied] = await Promise.all([
      notify(success, { ...fast, ping: { url: `${dropping.url}/p` } }),
      notify(success, { ...fast, ping: { url: `${denying.url}/p` } }),
    ]);
    expect(dropped[0]).toMatchObject({ status: 'ok', attempts: 2 });
    expect(dropped[0].attemptLog[0].error).toMatch(/^fetch failed/);
    expect(denied[0]).toMatchObject({ status: 'failed', attempts: 1, httpStatus: 401 });
    expect(denying.requests).toHaveLength(1);
  });

  it('an unreachable server, a bad URL and a throwing onAttempt never reject', async () => {
    const gone = await startRecorder();
    await gone.close();
    const results = await notify(
      failure,
      { ...fast, attempts: 1, ntfy: { server: gone.url, topic: 'n' }, webhook: { url: 'not a url' } },
      {
        onAttempt: () => {
          throw new Error('logger broke');
        },
      },
    );
    expect(results).toMatchObject([
      { channel: 'ntfy', status: 'failed', attempts: 1 },
      {
        channel: 'webhook',
        status: 'failed',
        attempts: 1,
        error: 'webhook url is not a valid URL: not a url',
      },
    ]);
    expect(results[0].error).toMatch(/ECONNREFUSED/);
  });
});

describe('secrets', () => {
  it('never appear in results, attempts or errors, even when the server echoes them', async () => {
    const token = 'tk_supersecret0123456789';
    const password = 'hunter2-password';
    const hookToken = 'hooktoken987654';
    const headerKey = 'header-key-555444';
    const uuid = '0f6b3f7e-1b8a-4c2e-9d2c-5f1a2b3c4d5e';
    // A misbehaving server that reflects the request (auth headers, URL) in its error body.
    const server = await recorder((req) => ({
      status: 500,
      body: `rejected ${JSON.stringify((req as { headers: unknown }).headers)} ${(req as { path: string }).path} at http://user:${password}@x/${uuid}?token=${hookToken}`,
    }));
    const seen: NotificationAttempt[] = [];
    const results = await notify(
      failure,
      {
        ...fast,
        attempts: 2,
        ntfy: { server: server.url, topic: 'n', token },
        webhook: {
          url: server.url.replace('http://', `http://hookuser:${password}@`) + `/w?token=${hookToken}`,
          headers: { 'X-Api-Key': headerKey },
        },
        ping: { url: `${server.url}/${uuid}` },
      },
      { onAttempt: (a) => seen.push(a) },
    );

    // The credentials did reach the server, where they belong.
    const received = JSON.stringify(server.requests);
    expect(received).toContain(`Bearer ${token}`);
    expect(received).toContain(headerKey);
    expect(received).toContain(Buffer.from(`hookuser:${password}`).toString('base64'));

    expect(results.map((r) => r.status)).toEqual(['failed', 'failed', 'failed']);
    expect(seen).toHaveLength(6);
    const reported = JSON.stringify({ results, seen });
    expect(reported).toContain('HTTP 500');
    for (const secret of [
      token,
      password,
      hookToken,
      headerKey,
      uuid,
      Buffer.from(`hookuser:${password}`).toString('base64'),
    ]) {
      expect(reported).not.toContain(secret);
    }
  });

  it('a bad ntfy server URL with a password is reported without the password', async () => {
    const results = await notify(failure, {
      ...fast,
      ntfy: { server: 'ftp://bob:pw-in-url-777@ntfy.example.com', topic: 'n' },
    });
    expect(results[0]).toMatchObject({
      status: 'failed',
      error: 'ntfy server must be an http(s) URL: ftp://***@ntfy.example.com/n',
    });
  });
});
