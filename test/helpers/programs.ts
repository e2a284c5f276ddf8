import { spawnSync } from 'node:child_process';

/** Whether a system program runs here (`rclone version`, `sshd -V`, ...). */
export function hasProgram(program: string, args: string[] = ['--version']): boolean {
  const result = spawnSync(program, args, { stdio: 'ignore', timeout: 10_000 });
  return !result.error;
}

export const HAS_RCLONE = hasProgram('rclone', ['version']);
export const HAS_SSHD = hasProgram('/usr/sbin/sshd', ['-V']) && hasProgram('ssh-keygen', ['-?']);
export const IS_ROOT = process.getuid?.() === 0;

/**
 * A suite title that says why it was skipped, since vitest shows only that it was: the reason is part of the
 * name, and printed once.
 */
export function titled(title: string, missing: string | undefined): string {
  if (!missing) return title;
  console.warn(`skipping "${title}": ${missing}`);
  return `${title} (skipped: ${missing})`;
}

export const RCLONE_MISSING = HAS_RCLONE ? undefined : 'rclone is not installed (apt-get install -y rclone)';
export const SSHD_MISSING = !HAS_SSHD
  ? 'the OpenSSH server is not installed (apt-get install -y openssh-server)'
  : !IS_ROOT
    ? 'starting sshd for a test needs root (CI runs as root)'
    : undefined;
