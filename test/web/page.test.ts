import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, ConsoleMessage, Page } from 'playwright-core';
import { hasChromium, launchChromium, loopbackContext, needChromium } from '../helpers/browser.js';
import {
  healthUrl,
  killDaemons,
  msg,
  removeDaemonDirs,
  spawnDaemon,
  type DaemonChild,
} from '../integration/daemon-helpers.js';
import { SECRETS, statusWorkspace, type StatusWorkspace } from './helpers.js';

const HTML_IN_ERROR = '<img src=x onerror="document.title=\'pwned\'">';

let w: StatusWorkspace;
let daemon: DaemonChild | undefined;
let url: string;
let browser: Browser | undefined;
const contexts: BrowserContext[] = [];

/** A page in a fresh loopback-only profile of the file's one browser. */
async function newPage(options: { javaScript?: boolean } = {}): Promise<Page> {
  const context = await loopbackContext(browser!, options);
  contexts.push(context);
  return context.newPage();
}

beforeAll(async () => {
  if (!hasChromium()) return;
  browser = await launchChromium();
  w = statusWorkspace({ http: { allowActions: true } });
  // A failed run whose error holds markup (before the good ones, so the verdict rests on those): the page must
  // show it as text.
  const catalog = w.catalog('app');
  const id = catalog.startRun('manual', 'app');
  catalog.finishRun(id, {
    status: 'failed',
    stage: 'snapshot',
    error: HTML_IN_ERROR,
    exitCode: 1,
    durationMs: 40,
  });
  catalog.close();
  for (let i = 0; i < 3; i++) await w.backup('app');
  await w.backup('notes');
  daemon = spawnDaemon(['--http', '127.0.0.1:0'], {
    cwd: w.dir,
    env: { LITEKEEP_HTTP_TOKEN: SECRETS.token, LITEKEEP_CATCH_UP: 'false' },
  });
  url = await healthUrl(daemon);
}, 120_000);

afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await browser?.close();
  killDaemons();
  removeDaemonDirs();
});

/** Everything that went wrong while a page loaded: console errors, script errors, failed or refused requests. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return problems;
}

describe('the status page in a real browser', () => {
  it('loads without errors, shows every database, marks the failed destination, draws one point per backup, and is safe', async (ctx) => {
    needChromium(ctx);
    const page = await newPage();
    const problems = watch(page);
    const response = await page.goto(`${url}/`);
    expect(response?.status()).toBe(200);
    await page.waitForLoadState('networkidle');
    expect(problems).toEqual([]);

    const headers = response!.headers();
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(headers['x-content-type-options']).toBe('nosniff');

    // Both databases, with their verdicts; the bucket that cannot be reached is marked, the folder is not.
    await expect(page.locator('section.database h2').allTextContents()).resolves.toEqual([
      expect.stringMatching(/^app /),
      expect.stringMatching(/^notes /),
    ]);
    const app = page.locator('section[data-database="app"]');
    const bucket = app.locator('tr[data-destination="bucket"]');
    await expect(bucket.getAttribute('class')).resolves.toBe('failed');
    expect(await bucket.textContent()).toMatch(/needs attention.*its last upload failed.*ECONNREFUSED/);
    await expect(app.locator('tr[data-destination="usb"]').getAttribute('class')).resolves.toBe('ok');
    expect(await page.locator('#verdict').textContent()).toMatch(/^DEGRADED — app on bucket: /);

    // One point per backup of the last 90 days, as the activity log records them (removed ones included).
    const catalog = w.catalog('app');
    const recorded = catalog.backupsSince(new Date(Date.now() - 90 * 86_400_000).toISOString(), 10_000);
    const runs = catalog.runsSince(new Date(Date.now() - 90 * 86_400_000).toISOString(), 10_000);
    catalog.close();
    expect(recorded.length).toBe(3);
    await expect(app.locator('figure.chart-size circle.point').count()).resolves.toBe(recorded.length);
    const titles = await app.locator('figure.chart-size circle.point title').allTextContents();
    expect(titles.map((t) => t.split(':')[0]).sort()).toEqual(recorded.map((b) => b.file).sort());
    await expect(app.locator('figure.chart-duration circle.point').count()).resolves.toBe(runs.length);
    await expect(app.locator('figure.chart-duration circle.point.failed').count()).resolves.toBe(1);

    // The retention plan says why each backup stays; times are in the configured zone.
    expect(await app.locator('table.retention tbody tr').first().textContent()).toMatch(
      /kept because last 1/,
    );
    expect(await app.locator('.facts').textContent()).toContain('Europe/Berlin');

    // Markup in an error is text: nothing was injected, and the failure is marked in the activity log.
    expect(await page.title()).not.toBe('pwned');
    await expect(page.locator('main img').count()).resolves.toBe(0);
    const failedRun = app.locator('table.activity tr.failed[data-kind="run"]');
    expect(await failedRun.textContent()).toContain(HTML_IN_ERROR);

    // No secret on the page or in the JSON.
    const html = await page.content();
    const json = await (await fetch(`${url}/api/status`)).text();
    for (const secret of Object.values(SECRETS)) {
      expect(html).not.toContain(secret);
      expect(json).not.toContain(secret);
    }

    const shot = path.join(w.dir, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = fs.readFileSync(shot);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.length).toBeGreaterThan(20_000);
  });

  it('works with the keyboard: skip link, database links, and "back up now" with the token', async (ctx) => {
    needChromium(ctx);
    const page = await newPage();
    await page.goto(`${url}/`);
    const focused = () =>
      page
        .locator(':focus')
        .evaluate(
          (a: {
            tagName: string;
            id: string;
            textContent: string | null;
            getAttribute(name: string): string | null;
          }) => ({
            tag: a.tagName,
            id: a.id,
            text: a.textContent?.trim(),
            href: a.getAttribute('href'),
          }),
        );

    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'A', text: 'Skip to the databases', href: '#main' });
    await page.keyboard.press('Enter');
    expect(await focused()).toMatchObject({ tag: 'MAIN', id: 'main' });

    // From the top again: the skip link, the database links in page order, then the form (actions are on):
    // the token goes in, Enter on the button starts a backup.
    await page.goto(`${url}/`);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'A', text: 'app', href: '#db-app' });
    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'A', text: 'notes', href: '#db-notes' });
    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'INPUT', id: 'backup-token' });
    await page.keyboard.type(SECRETS.token);
    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'BUTTON', text: 'Back up now' });
    const started = daemon!.records.length;
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.locator('#backup-now-result').textContent(), { timeout: 15_000 })
      .toMatch(/^Backup started/);
    await daemon!.waitFor((r) => r.msg === 'run started' && r.trigger === 'manual', 30_000);
    await daemon!.waitFor(msg('run finished'), 60_000);
    expect(daemon!.records.length).toBeGreaterThan(started);
    // The run is in the activity log as a person's: both databases got a manual backup.
    for (const name of ['app', 'notes']) {
      const catalog = w.catalog(name);
      expect(catalog.listRuns(1)[0]).toMatchObject({ trigger: 'manual', database: name });
      expect(catalog.listBackups()[0].trigger).toBe('manual');
      catalog.close();
    }
    expect(await page.inputValue('#backup-token')).toBe('');

    // Enter on a database link moves there, and the next Tab goes on from that database, not from the top.
    await page.goto(`${url}/`);
    for (let i = 0; i < 3; i++) await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ text: 'notes' });
    await page.keyboard.press('Enter');
    await expect.poll(() => new URL(page.url()).hash).toBe('#db-notes');
    await expect(page.locator('#db-notes').isVisible()).resolves.toBe(true);
    await page.keyboard.press('Tab');
    expect(await focused()).toMatchObject({ tag: 'A', href: '/api/status' });
  });

  it('refreshes itself every 30 seconds in place: a run made meanwhile appears without a reload', async (ctx) => {
    needChromium(ctx);
    const page = await newPage();
    // The page's own clock, stopped and driven by the test: 30 seconds pass without waiting for them.
    const start = Date.now();
    await page.clock.install({ time: start });
    await page.clock.pauseAt(start + 1000);
    const problems = watch(page);
    await page.goto(`${url}/`);
    await page.waitForLoadState('networkidle');
    const asked: string[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/') asked.push(r.resourceType());
    });
    let reloaded = false;
    page.on('framenavigated', () => (reloaded = true));
    const notesRuns = page.locator('section[data-database="notes"] table.activity tr[data-kind="run"]');
    const shown = await notesRuns.count();

    await w.backup('notes');
    await page.clock.runFor(29_000);
    expect(asked).toEqual([]);
    await expect(notesRuns.count()).resolves.toBe(shown);
    await page.clock.runFor(1_000);
    await expect.poll(() => notesRuns.count(), { timeout: 15_000 }).toBe(shown + 1);
    // One request for the page by its script, the new part swapped in; no navigation, nothing refused by the CSP.
    expect(asked).toEqual(['fetch']);
    expect(reloaded).toBe(false);
    expect(await page.locator('#refresh-state').textContent()).toBe('');
    expect(problems).toEqual([]);
  });

  it('reads without JavaScript: the same databases, and no "back up now" form that could not work', async (ctx) => {
    needChromium(ctx);
    const page = await newPage({ javaScript: false });
    const problems = watch(page);
    await page.goto(`${url}/`);
    await page.waitForLoadState('networkidle');
    expect(problems).toEqual([]);
    await expect(page.locator('section.database').count()).resolves.toBe(2);
    expect(
      await page.locator('section[data-database="app"] tr[data-destination="bucket"]').textContent(),
    ).toMatch(/needs attention/);
    expect(await page.locator('#backup-now').isVisible()).toBe(false);
    expect(await page.locator('noscript').count()).toBe(1);
  });
});
