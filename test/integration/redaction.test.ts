import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { makeDatabase } from '../helpers/db.js';
import { startRecorder, type Recorder } from '../servers/http-recorder.js';
import { daemonTempDir, killDaemons, msg, removeDaemonDirs, spawnDaemon } from './daemon-helpers.js';

/** JSON read back from the CLI; the expectations below check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const SECRET = 'TopSecret123';
let ntfy: Recorder;
let webhook: Recorder;

beforeAll(async () => {
  ntfy = await startRecorder();
  webhook = await startRecorder();
});
afterEach(killDaemons);
afterAll(async () => {
  removeDaemonDirs();
  await ntfy?.close();
  await webhook?.close();
});

/** Every file under `dir`, raw bytes as latin1 text: a secret stored anywhere shows up. */
function everyFileText(dir: string): string {
  let out = '';
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isFile()) out += fs.readFileSync(full).toString('latin1');
  }
  return out;
}

describe('secrets stay secret in every message', () => {
  it('an endpoint with credentials in its URL is masked in errors, status, history, notifications, logs and the catalog', async () => {
    const dir = daemonTempDir('litekeep-redaction-');
    makeDatabase(path.join(dir, 'app.db'), 20);
    // Nothing listens on port 1: every upload fails and quotes the endpoint.
    const endpoint = `http://AKIDUSER:${SECRET}@127.0.0.1:1`;
    const config = {
      database: 'app.db',
      backupDir: 'backups',
      compression: { algorithm: 'none' },
      destinations: [
        {
          name: 'bucket',
          type: 's3',
          bucket: 'my-bucket',
          endpoint,
          region: 'us-east-1',
          accessKeyId: 'AKIDUSER',
          secretAccessKey: 'also-secret-value',
          maxAttempts: 1,
        },
      ],
      notify: {
        attempts: 1,
        ntfy: { server: ntfy.url, topic: 'alerts' },
        webhook: { url: `${webhook.url}/hook` },
      },
    };
    fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
    const seen: string[] = [];
    const run = async (args: string[]) => {
      const r = await runCli(args, { cwd: dir });
      seen.push(`$ litekeep ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
      return r;
    };

    const backup = await run(['backup', '--json']);
    expect(backup.code, backup.stderr).toBe(3);
    const bucket = (JSON.parse(backup.stdout) as Json).destinations[0];
    expect(bucket.error).toContain('cannot reach S3 endpoint http://***@127.0.0.1:1 (ECONNREFUSED)');
    await run(['backup']);
    expect((await run(['status'])).stdout).toContain('http://***@127.0.0.1:1');
    await run(['status', '--json']);
    await run(['history', '--json', '--limit', '100']);
    await run(['history']);
    await run(['list', '--from', 'bucket']);
    await run(['sync', '--json']);
    await run(['config']);
    await run(['config', '--json']);
    await run(['verify', '--from', 'bucket']);
    await run(['restore', '--from', 'bucket', '--to', path.join(dir, 'restored.db')]);

    const daemon = spawnDaemon(['--schedule', '*/2 * * * * *'], {
      cwd: dir,
      env: { LITEKEEP_CATCH_UP: 'false', LITEKEEP_VERIFY: 'never', LITEKEEP_DEBUG: '1' },
    });
    await daemon.waitFor(msg('backup of app partly done'), 30_000);
    daemon.process.kill('SIGTERM');
    await daemon.exited;
    seen.push(daemon.stdout(), daemon.stderr());
    expect(daemon.stdout()).toContain('http://***@127.0.0.1:1');

    const everything = [
      ...seen,
      ...ntfy.requests.map((r) => `${r.path}\n${JSON.stringify(r.headers)}\n${r.body}`),
      ...webhook.requests.map((r) => `${r.path}\n${JSON.stringify(r.headers)}\n${r.body}`),
      everyFileText(path.join(dir, 'backups')),
    ].join('\n');
    expect(ntfy.requests.length).toBeGreaterThan(2);
    expect(webhook.requests.length).toBeGreaterThan(2);
    expect(everything).toContain('***@127.0.0.1:1');
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain('also-secret-value');
  });
});
