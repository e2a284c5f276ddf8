import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEPLOY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy');
/** The daemon's default `stopTimeout` (config schema): the service managers must wait longer than this. */
const STOP_TIMEOUT_MS = 10 * 60_000;

function unit(name: string): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (const line of fs.readFileSync(path.join(DEPLOY, name), 'utf8').split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) values.set(match[1], [...(values.get(match[1]) ?? []), match[2]]);
  }
  return values;
}

function systemdSeconds(value: string): number {
  const match = /^(\d+)(min|s|h)?$/.exec(value);
  if (!match) throw new Error(`unexpected systemd time ${value}`);
  return Number(match[1]) * (match[2] === 'min' ? 60 : match[2] === 'h' ? 3600 : 1);
}

describe('deployment files', () => {
  it('litekeep.service runs the daemon, stops it gracefully and restarts it on failure', () => {
    const service = unit('litekeep.service');
    expect(service.get('ExecStart')?.[0]).toMatch(/litekeep daemon$/);
    expect(service.get('KillSignal')).toEqual(['SIGTERM']);
    expect(service.get('KillMode')).toEqual(['mixed']);
    expect(systemdSeconds(service.get('TimeoutStopSec')![0]) * 1000).toBeGreaterThan(STOP_TIMEOUT_MS);
    expect(service.get('Restart')).toEqual(['on-failure']);
    expect(service.get('ProtectSystem')).toEqual(['strict']);
    expect(service.get('ReadWritePaths')?.length).toBeGreaterThan(0);
  });

  it('the timer alternative runs `litekeep backup` daily at 03:00 and catches up', () => {
    const timer = unit('litekeep-backup.timer');
    expect(timer.get('OnCalendar')).toEqual(['*-*-* 03:00:00']);
    expect(timer.get('Persistent')).toEqual(['true']);
    expect(timer.get('Unit')).toEqual(['litekeep-backup.service']);
    const service = unit('litekeep-backup.service');
    expect(service.get('Type')).toEqual(['oneshot']);
    expect(service.get('ExecStart')?.[0]).toMatch(/litekeep backup --trigger scheduled$/);
  });

  it('the pm2 file runs one daemon and waits longer than the stop timeout', () => {
    const config = createRequire(import.meta.url)(path.join(DEPLOY, 'ecosystem.config.cjs')) as {
      apps: Record<string, unknown>[];
    };
    const [app] = config.apps;
    expect(app).toMatchObject({ args: 'daemon', instances: 1, kill_signal: 'SIGTERM', treekill: false });
    expect(app.kill_timeout as number).toBeGreaterThan(STOP_TIMEOUT_MS);
  });
});
