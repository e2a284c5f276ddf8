import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jsonLines, runFixture, sleep, type Child } from './helpers.js';

let dir: string;
let child: Child | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-signal-'));
});
afterEach(() => {
  if (child && child.process.exitCode === null && child.process.signalCode === null)
    child.process.kill('SIGKILL');
  child = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const started = (line: string) => line.includes('"run started"');

describe('daemon process and signals', () => {
  it('first SIGTERM during a run lets it finish, then exits 0', async () => {
    child = runFixture('daemon-child.ts', [], { DIR: dir, TASK_MS: '1500' });
    await child.waitForLine(started);
    child.process.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code, child.stderr()).toBe(0);
    expect(fs.existsSync(path.join(dir, 'finished'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'backup.db'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'aborted'))).toBe(false);
    const messages = jsonLines(child.lines).map((record) => String(record.msg));
    expect(messages.some((message) => message.includes('letting the running backup finish'))).toBe(true);
    expect(messages).toContain('run finished');
  });

  it.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)('a second %s aborts the run at once and exits %d', async (signal, expected) => {
    child = runFixture('daemon-child.ts', [], { DIR: dir, TASK_MS: '30000' });
    await child.waitForLine(started);
    child.process.kill(signal);
    await child.waitForLine((line) => line.includes('letting the running backup finish'));
    child.process.kill(signal);
    const { code } = await child.exited;
    expect(code, child.stderr()).toBe(expected);
    expect(fs.existsSync(path.join(dir, 'aborted'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'finished'))).toBe(false);
    // The task removed its temp file when the abort signal fired.
    expect(fs.existsSync(path.join(dir, 'backup.tmp'))).toBe(false);
    expect(jsonLines(child.lines).some((record) => String(record.msg).startsWith('run aborted'))).toBe(true);
  });

  it('the first signal aborts a run that outlasts the stop timeout, and still exits 0', async () => {
    child = runFixture('daemon-child.ts', [], { DIR: dir, TASK_MS: '30000', STOP_TIMEOUT_MS: '300' });
    await child.waitForLine(started);
    child.process.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code, child.stderr()).toBe(0);
    expect(fs.existsSync(path.join(dir, 'aborted'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'backup.tmp'))).toBe(false);
  });

  it('an idle daemon stays alive on its schedule and exits 0 on SIGTERM', async () => {
    child = runFixture('daemon-child.ts', [], { DIR: dir, IDLE: '1' });
    await child.waitForLine((line) => line.includes('idle and ready'));
    await sleep(300);
    expect(child.process.exitCode).toBeNull();
    child.process.kill('SIGTERM');
    const { code } = await child.exited;
    expect(code, child.stderr()).toBe(0);
    expect(fs.existsSync(path.join(dir, 'started'))).toBe(false);
  });
});
