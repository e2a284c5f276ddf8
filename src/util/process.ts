import fsp from 'node:fs/promises';
import path from 'node:path';

/** Whether a process with this pid exists on this machine. */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes temp files in `dir` left by processes that are gone: `pattern` matches the names to consider and
 * captures the writer's pid in group 1. Files of live processes (this one included) are left alone.
 */
export async function removeTempsOfDeadProcesses(dir: string, pattern: RegExp): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = pattern.exec(name);
    if (!m || Number(m[1]) === process.pid || isProcessAlive(Number(m[1]))) continue;
    await fsp.rm(path.join(dir, name), { recursive: true, force: true });
  }
}
