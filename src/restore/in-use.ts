import fs from 'node:fs';
import path from 'node:path';

export interface ProcessUsingFile {
  pid: number;
  command: string;
  file: string;
  /** How it was found: an open file descriptor, or a lock listed in /proc/locks. */
  how: 'open' | 'lock';
}

const SIDE_SUFFIXES = ['', '-wal', '-shm', '-journal'];

function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || '?';
  } catch {
    return '?';
  }
}

/** Linux's encoding of st_dev, as /proc/locks prints it (`major:minor` in hex). */
function deviceKey(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16)}:${minor.toString(16)}`;
}

/**
 * Processes that hold the database (or its -wal/-shm/-journal) open or locked, found through /proc on Linux:
 * open descriptors in /proc/PID/fd, and POSIX/flock locks in /proc/locks. The second catches processes whose fd
 * folder we may not read (another user) and any SQLite connection in WAL mode, which keeps a read lock on the
 * -shm for as long as it is open. This process itself is left out: it opens the target only after this check.
 * It only describes: whether the database is in use is asked of SQLite itself (probeLiveDatabase), which also
 * sees processes in other PID namespaces. Where /proc is not available this returns [].
 */
export function processesUsing(dbPath: string): ProcessUsingFile[] {
  const resolved = path.resolve(dbPath);
  let real = resolved;
  try {
    real = path.join(fs.realpathSync(path.dirname(resolved)), path.basename(resolved));
  } catch {
    // the folder is gone: nothing can hold the file open
  }
  const files = new Map<string, string>();
  const inodes = new Map<string, string>();
  for (const suffix of SIDE_SUFFIXES) {
    files.set(resolved + suffix, resolved + suffix);
    files.set(real + suffix, resolved + suffix);
    try {
      const stat = fs.statSync(resolved + suffix, { bigint: true });
      inodes.set(`${deviceKey(stat.dev)}:${stat.ino}`, resolved + suffix);
    } catch {
      // not there
    }
  }

  const found = new Map<number, ProcessUsingFile>();
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  // This process counts too: an app that embeds litekeep must close its own connection before restoring.
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const file = files.get(link);
      if (file) {
        found.set(Number(pid), { pid: Number(pid), command: commandOf(Number(pid)), file, how: 'open' });
        break;
      }
    }
  }

  let locks = '';
  try {
    locks = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    // not Linux, or hidden: the fd scan above is what we have
  }
  // "1: POSIX  ADVISORY  READ 1234 fe:00:2148758 128 128" (a "->" marks a waiter, which is also a user)
  const line = /^\d+:\s+(?:->\s+)?\S+\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i;
  for (const text of locks.split('\n')) {
    const m = line.exec(text);
    if (!m) continue;
    const key = `${parseInt(m[2], 16).toString(16)}:${parseInt(m[3], 16).toString(16)}:${m[4]}`;
    const file = inodes.get(key);
    const pid = Number(m[1]);
    if (!file || found.has(pid)) continue;
    // pid 0 or -1: a lock of a process outside our PID namespace, or an open-file-description lock.
    found.set(pid, { pid, command: pid > 0 ? commandOf(pid) : '?', file, how: 'lock' });
  }
  return [...found.values()].sort((a, b) => a.pid - b.pid);
}

/** One line for a refusal: who holds the file, and where to look. */
export function describeUsers(users: ProcessUsingFile[]): string {
  return users
    .map((u) =>
      u.pid > 0
        ? `pid ${u.pid} (${u.command}, ${u.how === 'open' ? 'has' : 'locks'} ${path.basename(u.file)}; see /proc/${u.pid}/cmdline)`
        : `a process outside this PID namespace (locks ${path.basename(u.file)}; see /proc/locks)`,
    )
    .join(', ');
}
