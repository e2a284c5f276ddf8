import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { tempNameFor } from '../naming.js';

export async function fsyncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncFileSync(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const UNSYNCABLE_DIR = ['EISDIR', 'EINVAL', 'EPERM', 'EBADF'];

export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (error) {
    if (!UNSYNCABLE_DIR.includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Makes a rename inside `dir` durable. Some file systems refuse to fsync folders; that is not an error. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (error) {
    if (!UNSYNCABLE_DIR.includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle?.close();
  }
}

/**
 * `mkdir -p` with `mode` for every folder it creates; returns the first one it created (undefined when all were
 * there). Node's own `recursive: true` loops forever where creating a folder fails with ENOENT under a parent
 * that exists (a path under /proc or /sys): here that is an error naming the folder.
 */
export function makeDirsSync(dir: string, mode = 0o700): string | undefined {
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let at = target; !fs.existsSync(at); at = path.dirname(at)) {
    missing.unshift(at);
    if (path.dirname(at) === at) break;
  }
  for (const folder of missing) {
    try {
      fs.mkdirSync(folder, { mode });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      throw Object.assign(
        new Error(
          `cannot create the folder ${folder} (${code ?? String(error)}); check the path and its permissions`,
        ),
        { code },
      );
    }
  }
  return missing[0];
}

/** Creates a folder (and its parents) that only its owner can read. */
export function ensurePrivateDir(dir: string): void {
  if (fs.existsSync(dir)) return;
  makeDirsSync(dir, 0o700);
  fs.chmodSync(dir, 0o700);
}

/**
 * Moves a finished temp file to its final name without ever replacing an existing file: link() fails with
 * EEXIST where rename() would silently overwrite. Returns false when the name is taken.
 */
export async function publishNoClobber(tempPath: string, finalPath: string): Promise<boolean> {
  try {
    await fsp.link(tempPath, finalPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'EXDEV', 'ENOSYS', 'EOPNOTSUPP'].includes(code ?? '')) throw error;
    // File systems without hard links: check, then rename (a narrow race, but never a silent loss of ours).
    if (fs.existsSync(finalPath)) return false;
    await fsp.rename(tempPath, finalPath);
    await fsyncDir(path.dirname(finalPath));
    return true;
  }
  await fsp.unlink(tempPath);
  await fsyncDir(path.dirname(finalPath));
  return true;
}

/** A temp name beside `target`, so that the final rename stays on one file system and is atomic. */
export function tempPathBeside(target: string): string {
  return path.join(path.dirname(target), tempNameFor(path.basename(target)));
}

/**
 * Writes a small file atomically: temp in the same folder, fsync, rename, fsync the folder. Creates a missing
 * folder with mode 0700; the file gets `mode` whatever the umask says (credentials must stay private).
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  makeDirsSync(dir, 0o700);
  const temp = tempPathBeside(file);
  const handle = await fsp.open(temp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fsp.rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fsp.rename(temp, file);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dir);
}

/** Binary units with one decimal (`8.0 KiB`, `11.8 MiB`); plain bytes below 1 KiB. */
export function humanBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return `${bytes} B`;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  // 1023.96 KiB would print as "1024.0 KiB"; promote it instead.
  if (unit > 0 && Number(value.toFixed(1)) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
