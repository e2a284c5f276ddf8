import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let mountable: boolean | undefined;

/** Whether this process may mount a tmpfs (root on Linux): lets tests fill a real disk. */
export function canMount(): boolean {
  if (mountable !== undefined) return mountable;
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    mountable = true;
  } catch {
    mountable = false;
  }
  fs.rmSync(probe, { recursive: true, force: true });
  return mountable;
}

/** Mounts a small tmpfs (optionally read-only) and returns its path and an unmount function. */
export function mountTmpfs(options: { sizeKb: number; readOnly?: boolean }): {
  dir: string;
  unmount: () => void;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'litekeep-tmpfs-'));
  const opts = [`size=${options.sizeKb}k`, 'mode=0700'];
  if (options.readOnly) opts.push('ro');
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts.join(','), 'tmpfs', dir]);
  return {
    dir,
    unmount: () => {
      execFileSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
