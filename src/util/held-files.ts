import fs from 'node:fs';

/**
 * Reads the start of a file that SQLite connections of this process may hold locks on (a database, its `-shm`)
 * through one descriptor kept open for the life of the process. POSIX drops every fcntl lock a process holds
 * on a file when it closes any descriptor of that file, SQLite's own included
 * (https://www.sqlite.org/howtocorrupt.html, "POSIX advisory locks canceled by a separate thread doing close()"):
 * opening and closing `<db>-shm` beside a read transaction ends that transaction's read lock without a word,
 * the app may reset the WAL under it, and the next read fails with "database disk image is malformed". (The
 * restore path does such reads in a helper process instead: src/restore/outside.ts.)
 *
 * A descriptor is opened again only when the path names another file (deleted and created again): closing one
 * of a file that is gone cannot touch the locks on the file there now.
 */
const held = new Map<string, { fd: number; dev: number; ino: number }>();

/** The first `length` bytes of `file` (fewer when it is shorter); undefined when there is no such file. */
export function readHeldHead(file: string, length: number): Buffer | undefined {
  let current: fs.Stats;
  try {
    current = fs.statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let entry = held.get(file);
  if (entry && (entry.ino !== current.ino || entry.dev !== current.dev)) {
    fs.closeSync(entry.fd);
    held.delete(file);
    entry = undefined;
  }
  if (!entry) {
    const fd = fs.openSync(file, 'r');
    const opened = fs.fstatSync(fd);
    entry = { fd, dev: opened.dev, ino: opened.ino };
    held.set(file, entry);
  }
  const bytes = Buffer.alloc(length);
  const read = fs.readSync(entry.fd, bytes, 0, length, 0);
  return bytes.subarray(0, read);
}
