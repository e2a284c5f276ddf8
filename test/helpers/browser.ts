import { spawnSync } from 'node:child_process';
import type { TestContext } from 'vitest';
import type { Browser, BrowserContext } from 'playwright-core';

/**
 * Debian's chromium, found on PATH like every other program the tests drive (the fresh-machine replay hides it
 * there); playwright-core drives it and never downloads a browser of its own.
 */
export const CHROMIUM: string | undefined =
  spawnSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).stdout.trim() || undefined;

export const hasChromium = (): boolean => CHROMIUM !== undefined;

/** Skips the running test, with the reason in the run's summary, where Debian's chromium is not installed. */
export function needChromium(context: TestContext): void {
  if (!hasChromium()) context.skip('needs chromium on PATH (apt-get install -y chromium)');
}

/** One headless chromium for a test file (a launch costs seconds on a loaded machine): share it. */
export async function launchChromium(): Promise<Browser> {
  process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * A fresh profile in the shared browser that reaches loopback only: every request to another host is aborted
 * (and so fails the test that made it).
 */
export async function loopbackContext(
  browser: Browser,
  options: { javaScript?: boolean } = {},
): Promise<BrowserContext> {
  const context = await browser.newContext({
    javaScriptEnabled: options.javaScript ?? true,
    viewport: { width: 1280, height: 1000 },
  });
  await context.route(
    (url) => !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname),
    (route) => route.abort('blockedbyclient'),
  );
  return context;
}
