import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { loadConfig, type DatabaseTarget } from '../../src/config/index.js';
import { replicationStateFile } from '../../src/pitr/capture.js';
import type { StatusDocument } from '../../src/web/index.js';
import { hasChromium, launchChromium, loopbackContext, needChromium } from '../helpers/browser.js';
import { runCli, spawnCli, type CliChild } from '../helpers/cli.js';
import {
  daemonTempDir,
  healthUrl,
  killDaemons,
  msg,
  removeDaemonDirs,
  spawnDaemon,
} from '../integration/daemon-helpers.js';
import { startWriter, stopWriters } from '../pitr/app-writer.js';
import { shippedTo, waitFor } from '../pitr/replication-setup.js';

/**
 * The status page's replication section against real shipping: the daemon replicating one database, `litekeep
 * replicate` another; then that one's replicator gone while its app's checkpoints reset the WAL (a gap that a
 * later `replicate --once` finds). Every figure on the page is checked against the shipping state the
 * replicators wrote, and the same figures come in /api/status and in `litekeep status --json`.
 */

let browser: Browser | undefined;
const replicators: CliChild[] = [];

beforeAll(async () => {
  if (hasChromium()) browser = await launchChromium();
}, 60_000);
afterEach(() => {
  for (const c of replicators.splice(0)) c.process.kill('SIGKILL');
  stopWriters();
  killDaemons();
});
afterAll(async () => {
  await browser?.close();
  removeDaemonDirs();
});

interface ShipperState {
  segmentsShipped: number;
  bytesShipped: number;
  wholeSince?: number;
  gapsTotal?: number;
  recentGaps?: number[];
}

const stateOf = (target: DatabaseTarget): ShipperState =>
  JSON.parse(fs.readFileSync(replicationStateFile(target, 'vault'), 'utf8')) as ShipperState;

/** Every commit in the WAL shipped to vault and no base owed (the app idle meanwhile). */
const shipped = (target: DatabaseTarget) => shippedTo(target.path, replicationStateFile(target, 'vault'));

/** The figures of one destination's row, as the page shows them (exact numbers from their `<data value>`). */
async function row(page: Page, database: string) {
  const section = page.locator(`section[data-database="${database}"]`);
  const tr = section.locator('table.replication tr[data-replication="vault"]');
  const value = async (selector: string) => Number(await tr.locator(selector).getAttribute('value'));
  return {
    section,
    tr,
    className: await tr.getAttribute('class'),
    text: (await tr.textContent()) ?? '',
    segments: await value('data.segments'),
    bytes: await value('.bytes data'),
    lagMs: await value('data.lag'),
    gaps: await value('data.gaps'),
    recoverableFrom: await tr.locator('td.recoverable time').first().getAttribute('datetime'),
    by: await section.locator('p.replicator').getAttribute('data-by'),
    lead: (await section.locator('p.replicator').textContent()) ?? '',
    problems: await section.locator('div.replication p.problem').allTextContents(),
    heading: (await section.locator('h2').textContent()) ?? '',
  };
}

describe('the status page shows replication', () => {
  it('per database and destination, from the shipping state, and marks a database nobody replicates and a gap', async (ctx) => {
    needChromium(ctx);
    const dir = daemonTempDir('litekeep-web-pitr-');
    fs.writeFileSync(
      path.join(dir, 'litekeep.yml'),
      JSON.stringify({
        databases: [
          { name: 'app', path: 'app.db', replicate: { enabled: true, interval: '100ms' } },
          // The daemon tries a held lock again once an interval: an hour here, so once notes' own replicator
          // is gone nobody replicates it for the rest of the test.
          { name: 'notes', path: 'notes.db', replicate: { enabled: true, interval: '1h' } },
        ],
        backupDir: 'backups',
        timeZone: 'UTC',
        host: 'web1',
        schedule: '0 3 * * *',
        catchUp: false,
        retention: { last: 100 },
        notify: {},
        destinations: [{ name: 'vault', type: 'local', path: 'vault', format: 'incremental' }],
      }),
    );
    const targets = loadConfig({ cwd: dir, env: {} }).databases;
    const app = targets.find((t) => t.name === 'app')!;
    const notes = targets.find((t) => t.name === 'notes')!;
    const appWriter = startWriter(app.path);
    const notesWriter = startWriter(notes.path);
    expect(await appWriter.ready).toBe('ready');
    expect(await notesWriter.ready).toBe('ready');
    await appWriter.send('burst 3');
    await notesWriter.send('burst 3');

    // notes is replicated by litekeep replicate, started first; the daemon finds it held and waits.
    const cli = spawnCli(['replicate', '--db', 'notes', '--interval', '100ms'], {
      cwd: dir,
      timeoutMs: 300_000,
    });
    replicators.push(cli);
    await waitFor('notes shipped by litekeep replicate', () => shipped(notes));
    const daemon = spawnDaemon(['--http', '127.0.0.1:0'], { cwd: dir });
    const url = await healthUrl(daemon);
    await daemon.waitFor(msg('is replicated by another process'), 60_000);
    await daemon.waitFor(msg('base snapshot of app taken'), 90_000);
    await appWriter.send('burst 6');
    await waitFor('app shipped by the daemon', () => shipped(app));

    const context = await loopbackContext(browser!);
    const page = await context.newPage();
    expect((await page.goto(`${url}/`))?.status()).toBe(200);

    // app: this daemon ships it, caught up; the counts are the shipping state's, recovery whole since its base.
    const appState = stateOf(app);
    expect(appState.segmentsShipped).toBeGreaterThanOrEqual(2);
    const a = await row(page, 'app');
    expect(a.by).toBe('this-process');
    expect(a.lead).toMatch(
      new RegExp(
        `^Replicated by this daemon \\(pid ${daemon.process.pid} on .*the litekeep daemon.*\\) · mode follow`,
      ),
    );
    expect(a.className).toBe('ok');
    expect(a.segments).toBe(appState.segmentsShipped);
    expect(a.bytes).toBe(appState.bytesShipped);
    expect(a.lagMs).toBe(0);
    expect(a.gaps).toBe(0);
    expect(a.text).toContain('caught up');
    expect(a.recoverableFrom).toBe(new Date(appState.wholeSince!).toISOString());
    expect(a.problems).toEqual([]);
    expect(a.heading).not.toContain('replication needs attention');

    // notes: another process (the CLI's pid) ships it.
    const n = await row(page, 'notes');
    expect(n.by).toBe('other-process');
    expect(n.lead).toMatch(
      new RegExp(`^Replicated by another process \\(pid ${cli.process.pid} on .*litekeep replicate`),
    );
    expect(n.className).toBe('ok');
    expect(n.segments).toBe(stateOf(notes).segmentsShipped);
    expect(n.bytes).toBe(stateOf(notes).bytesShipped);
    expect(n.problems).toEqual([]);

    // The JSON carries the same, and `litekeep status --json` reads the same figures.
    const doc = (await (await fetch(`${url}/api/status`)).json()) as StatusDocument;
    const appJson = doc.databases.find((d) => d.name === 'app')!.replication!;
    expect(appJson).toMatchObject({ configured: true, mode: 'follow', by: 'this-process', healthy: true });
    expect(appJson.replicator?.pid).toBe(daemon.process.pid);
    expect(appJson.destinations).toEqual([
      expect.objectContaining({
        destination: 'vault',
        healthy: true,
        problems: [],
        segmentsShipped: appState.segmentsShipped,
        bytesShipped: appState.bytesShipped,
        lagMs: 0,
        framesBehind: 0,
        gaps: 0,
        recoverableFrom: new Date(appState.wholeSince!).toISOString(),
      }),
    ]);
    const cliStatus = JSON.parse((await runCli(['status', '--db', 'app', '--json'], { cwd: dir })).stdout);
    const cliApp = (Array.isArray(cliStatus) ? cliStatus[0] : cliStatus) as Record<string, unknown>;
    const cliVault = (cliApp.replication as Record<string, unknown>[])[0];
    for (const key of [
      'segmentsShipped',
      'bytesShipped',
      'recoverableFrom',
      'gaps',
      'lastShippedAt',
    ] as const)
      expect(appJson.destinations[0][key], key).toEqual(cliVault[key]);
    expect(cliApp.replicationProblems).toEqual([]);

    // notes' replicator killed; while nobody follows it, its app writes on and checkpoints: the page says
    // nobody replicates a database marked replicate, as a problem.
    cli.process.kill('SIGKILL');
    await cli.exited;
    await notesWriter.send('burst 40');
    await notesWriter.send('checkpoint PASSIVE');
    await notesWriter.send('burst 2');
    await page.reload();
    const gone = await row(page, 'notes');
    expect(gone.by).toBe('nobody');
    expect(gone.problems).toEqual([
      expect.stringMatching(
        /^✗ replicate is configured but no process replicates notes now: .*start litekeep daemon or litekeep replicate/,
      ),
    ]);
    expect(gone.heading).toContain('⚠ replication needs attention');
    await expect(
      page.locator('section[data-database="notes"] div.replication').getAttribute('data-healthy'),
    ).resolves.toBe('false');
    expect(await page.locator('nav li', { hasText: 'notes' }).textContent()).toContain('⚠');
    expect(await page.locator('nav li', { hasText: 'app' }).textContent()).toContain('✓');

    // A one-off replicate finds the gap the app's checkpoints made, takes a base, and leaves: the gap is
    // marked on vault's row, with the count and time of the shipping state, and nobody replicates still.
    const once = await runCli(['replicate', '--db', 'notes', '--once'], { cwd: dir, timeoutMs: 120_000 });
    expect(once.stderr).toMatch(/GAP on vault/);
    const gapState = stateOf(notes);
    expect(gapState.gapsTotal).toBe(1);
    await page.reload();
    const gap = await row(page, 'notes');
    expect(gap.by).toBe('nobody');
    expect(gap.className).toBe('failed');
    expect(gap.gaps).toBe(1);
    expect(gap.text).toMatch(
      /needs attention.*a gap .* ago \(the WAL was reset before litekeep read it\): moments in it cannot be restored to the second/,
    );
    await expect(
      gap.tr
        .locator('td', { has: page.locator('data.gaps') })
        .locator('time')
        .getAttribute('datetime'),
    ).resolves.toBe(new Date(gapState.recentGaps!.at(-1)!).toISOString());
    expect(gap.segments).toBe(gapState.segmentsShipped);
    expect(gap.bytes).toBe(gapState.bytesShipped);
    const after = (await (await fetch(`${url}/api/status`)).json()) as StatusDocument;
    const notesJson = after.databases.find((d) => d.name === 'notes')!.replication!;
    expect(notesJson).toMatchObject({ by: 'nobody', healthy: false });
    expect(notesJson.destinations[0]).toMatchObject({ healthy: false, gaps: 1 });
    // litekeep status says the same problems, from the same judgement.
    const text = (await runCli(['status', '--db', 'notes'], { cwd: dir })).stdout;
    expect(text).toMatch(/WARNING: replicate is configured but no process replicates notes now/);
    expect(text).toMatch(/WARNING: on vault: a gap .* ago/);

    await context.close();
    daemon.process.kill('SIGTERM');
    expect((await daemon.exited).code).toBe(0);
  }, 300_000);
});
