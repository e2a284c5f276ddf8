import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { healthUrl, killDaemons, msg, spawnDaemon, type LogRecord } from '../integration/daemon-helpers.js';
import { startWriter, stopWriters } from './app-writer.js';
import { killReplicators, setUp, waitFor } from './replication-setup.js';

/**
 * One replicator per database, across processes: `litekeep replicate` and the daemon with `replicate: true`
 * on the same database never ship side by side, and a replicator killed with SIGKILL never blocks the next.
 */

afterEach(() => {
  stopWriters();
  killDaemons();
  killReplicators();
});

const shippedByDaemon = (r: LogRecord) => /^shipped \d+ frames of app/.test(String(r.msg ?? ''));

describe('the replication lock', () => {
  it('lets one process replicate a database: the daemon waits for litekeep replicate, and the other way round', async () => {
    const t = setUp({
      replicate: { enabled: true, interval: '100ms' },
      schedule: '0 3 * * *',
      catchUp: false,
      // The daemon logs every shipment at debug: what shows that it does not ship while it waits.
      log: { level: 'debug' },
    });
    const writer = startWriter(t.db);
    expect(await writer.ready).toBe('ready');
    await writer.send('burst 3');
    const cli = t.replicate();
    await waitFor('the first base snapshot', () => t.snapshots() >= 1);
    await waitFor('the first commits shipped', t.shipped);
    const cliPid = cli.process.pid!;

    // The daemon finds the database replicated: it says so, does not crash and does not ship.
    const daemon = spawnDaemon(['--http', '127.0.0.1:0'], { cwd: t.dir });
    const url = await healthUrl(daemon);
    const waiting = await daemon.waitFor(msg('is replicated by another process'));
    expect(String(waiting.msg)).toContain(`pid ${cliPid}`);
    expect(String(waiting.msg)).toContain('litekeep replicate');
    const metric = async (name: string) => {
      const text = await (await fetch(new URL('/metrics', url))).text();
      return Number(new RegExp(`^${name}\\{database="app"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    };
    expect(await metric('litekeep_replication_by_other_process')).toBe(1);
    expect(await metric('litekeep_replication_active')).toBe(1);
    const status = JSON.parse((await runCli(['status', '--json'], { cwd: t.dir })).stdout);
    expect(status.replicator.pid).toBe(cliPid);
    expect(status.replicator.purpose).toMatch(/replication of app by litekeep replicate/);
    const text = await runCli(['status'], { cwd: t.dir });
    expect(text.stdout).toMatch(new RegExp(`replicated by pid ${cliPid} on .*litekeep replicate`));

    // Backups are not held back by replication (the replicator's own bases are backups too).
    const backup = await runCli(['backup'], { cwd: t.dir });
    expect(backup.code, backup.stderr).toBe(0);
    await writer.send('burst 5');
    await waitFor('the burst shipped by litekeep replicate', t.shipped);
    expect(daemon.records.filter(shippedByDaemon)).toEqual([]);
    expect(daemon.process.exitCode).toBeNull();

    // litekeep replicate killed with SIGKILL: its lock goes with it, and the daemon takes over.
    cli.process.kill('SIGKILL');
    await cli.exited;
    await daemon.waitFor(msg(`pid ${cliPid} no longer replicates app: replicating it here now`), 30_000);
    await writer.send('burst 4');
    await waitFor('the burst shipped by the daemon', t.shipped);
    await daemon.waitFor(shippedByDaemon, 30_000);
    expect(await metric('litekeep_replication_by_other_process')).toBe(0);
    expect(await metric('litekeep_replication_active')).toBe(1);

    // Now litekeep replicate is the one refused, in one line naming the daemon and the fix.
    const daemonPid = daemon.process.pid!;
    for (const args of [['replicate', '--once'], ['replicate']]) {
      const refused = await runCli(args, { cwd: t.dir });
      expect(refused.code, refused.stderr).toBe(1);
      const lines = refused.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(
          `app is already replicated by pid ${daemonPid} on host .* \\(replication of app by the litekeep daemon, since .*\\); .*stop that process first`,
        ),
      );
    }

    // The daemon killed with SIGKILL leaves nothing that stops replication either.
    daemon.process.kill('SIGKILL');
    await daemon.exited;
    await writer.send('burst 2');
    const once = await runCli(['replicate', '--once'], { cwd: t.dir });
    expect(once.code, once.stderr).toBe(0);
    expect(await t.shipped()).toBe(true);
    const after = JSON.parse((await runCli(['status', '--json'], { cwd: t.dir })).stdout);
    expect(after.replicator).toBeNull();
  }, 300_000);
});
