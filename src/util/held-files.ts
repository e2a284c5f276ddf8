import fs from 'node:fs';

/**
 * Files that SQLite connections of this process hold locks on (a database, its `-shm`) must not be opened and
 * closed beside them: POSIX drops every fcntl lock a process holds on a file when it closes any descriptor of
 * that file, SQLite's own included (https://www.sqlite.org/howtocorrupt.html, "POSIX advisory locks canceled by
 * a separate thread doing close()"). An open and close of `<db>-shm` beside a read transaction ends its read
 * lock without a word; the app may then reset the WAL under it, and its next read fails with "database disk
 * image is malformed". (The restore path reads such files in a helper process: src/restore/outside.ts.)
 *
 * So whoever opens connections to a database holds its files open here first (`holdOpen`, counted), and lets
 * go only after closing them; `readHead` reads through a held descriptor when there is one, and opens and
 * closes the file only when nobody in this process holds it (then no lock of ours can be dropped, and no
 * descriptor lingers to make the database look in use to a restore).
 */
interface Held {
  fd: number;
  dev: number;
  ino: number;
  holders: number;
}

const held = new Map<string, Held>();

/** Keeps a descriptor of `file` open until the returned function is called (as often as it was held). */
export function holdOpen(file: string): () => void {
  let entry = held.get(file);
  if (!entry) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return () => undefined;
    }
    const stat = fs.fstatSync(fd);
    entry = { fd, dev: stat.dev, ino: stat.ino, holders: 0 };
    held.set(file, entry);
  }
  entry.holders += 1;
  const it = entry;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    it.holders -= 1;
    if (it.holders === 0 && held.get(file) === it) {
      held.delete(file);
      fs.closeSync(it.fd);
    }
  };
}

/** Whether this process holds `file` open now (through `holdOpen`). */
export function isHeld(file: string): boolean {
  return held.has(file);
}

/** The first `length` bytes of `file` (fewer when it is shorter); undefined when there is no such file. */
export function readHead(file: string, length: number): Buffer | undefined {
  const bytes = Buffer.alloc(length);
  const entry = held.get(file);
  if (entry) {
    let current: fs.Stats | undefined;
    try {
      current = fs.statSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    // The same file as the one held: read through the held descriptor. Another one (deleted and made again):
    // its locks are not the held file's, so a plain read is safe.
    if (current.ino === entry.ino && current.dev === entry.dev)
      return bytes.subarray(0, fs.readSync(entry.fd, bytes, 0, length, 0));
  }
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return bytes.subarray(0, fs.readSync(fd, bytes, 0, length, 0));
  } finally {
    fs.closeSync(fd);
  }
}
