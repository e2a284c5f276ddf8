import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { backup, cleanUp, HOST, ntfyEnv, recorder, TOKEN, workspace } from './notify-helpers.js';

afterAll(cleanUp);

describe('secrets in notification output', () => {
  it('keeps the token out of backup --json, history --json, config and stderr', async () => {
    // A server that echoes the credential back in its error, as some proxies do.
    const server = await recorder(() => ({ status: 401, body: `invalid token ${TOKEN}` }));
    const w = workspace();
    const env = ntfyEnv(server.url);
    const run = await backup(w, env);
    expect(run.code).toBe(3);
    expect(server.requests[0].headers.authorization).toBe(`Bearer ${TOKEN}`);
    // 401 is the request's fault: no retry.
    expect(server.requests).toHaveLength(1);
    const out = JSON.parse(run.stdout);
    expect(out.notifications[0]).toMatchObject({ status: 'failed', httpStatus: 401, attempts: 1 });
    expect(out.notifications[0].error).toBe('HTTP 401 Unauthorized: invalid token ***');
    const text = await runCli(['backup', '--db', w.db, '--dir', w.backups, '--compression', 'none'], {
      cwd: w.dir,
      env,
    });
    expect(text.code).toBe(3);
    const history = await runCli(['history', '--db', w.db, '--dir', w.backups, '--json'], {
      cwd: w.dir,
      env,
    });
    expect(history.code).toBe(0);
    expect(history.stdout).toContain('invalid token ***');
    const config = await runCli(['config', '--json'], { cwd: w.dir, env: { ...env, DATABASE_URL: w.db } });
    expect(config.code).toBe(0);
    const configText = await runCli(['config'], { cwd: w.dir, env: { ...env, DATABASE_URL: w.db } });
    expect(configText.stdout).toMatch(/notify\.ntfy\.token\s+\*\*\*/);
    for (const result of [run, text, history, config, configText]) {
      expect(result.stdout + result.stderr).not.toContain(TOKEN);
      expect(result.stdout + result.stderr).not.toContain(TOKEN.slice(3));
    }
  });
});

describe('litekeep notify test', () => {
  it('sends a test message to every configured channel and reports each result', async () => {
    const server = await recorder((p) =>
      p.startsWith('/hooks/') ? { status: 404, body: 'no such hook' } : { status: 200 },
    );
    const w = workspace();
    const env = {
      ...ntfyEnv(server.url),
      DATABASE_URL: w.db,
      BACKUP_DIR: w.backups,
      LITEKEEP_NOTIFY_PING_URL: `${server.url}/ping/5e2a9c1d-7f3b-4e8a`,
    };
    let r = await runCli(['notify', 'test'], { cwd: w.dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'ntfy     ok HTTP 200 after 1 attempt(s)',
      'ping     ok HTTP 200 after 1 attempt(s)',
    ]);
    const ntfy = server.requests.find((q) => q.path === '/litekeep-alerts')!;
    expect(ntfy.headers).toMatchObject({
      title: `litekeep test notification (${HOST})`,
      priority: 'default',
    });
    // The test ping goes to /log, so a dead-man check's state is not changed by testing.
    expect(server.requests.find((q) => q.path.startsWith('/ping/'))!.path).toBe(
      '/ping/5e2a9c1d-7f3b-4e8a/log',
    );

    r = await runCli(['notify', 'test', '--json'], {
      cwd: w.dir,
      env: { ...env, LITEKEEP_NOTIFY_WEBHOOK_URL: `${server.url}/hooks/0a1b2c3d4e5f` },
    });
    expect(r.code).toBe(1);
    const results = JSON.parse(r.stdout).results as { channel: string; status: string; error?: string }[];
    expect(results.map((x) => [x.channel, x.status])).toEqual([
      ['ntfy', 'ok'],
      ['webhook', 'failed'],
      ['ping', 'ok'],
    ]);
    expect(results[1].error).toBe('HTTP 404 Not Found: no such hook');

    r = await runCli(['notify', 'test'], { cwd: w.dir, env: { DATABASE_URL: w.db } });
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toContain('no notification channel configured');
  });
});
