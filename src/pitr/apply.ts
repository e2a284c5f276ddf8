import fs from 'node:fs/promises';
import type { WalFrame } from './wal.js';

/**
 * Writes committed WAL frames into a database image, as a checkpoint would: each page at its place, then the
 * file cut (or grown) to the size the last commit frame records. Frames are page images, so replaying a
 * transaction the image already holds changes nothing: a base taken at any moment after the first frame's
 * transaction began is brought to the state of the last commit.
 */
export async function applyFrames(
  imagePath: string,
  frames: Iterable<WalFrame>,
  pageSize: number,
): Promise<number> {
  const handle = await fs.open(imagePath, 'r+');
  try {
    const size = await writeFrames(handle, frames, pageSize);
    await handle.sync();
    return size;
  } finally {
    await handle.close();
  }
}

/**
 * `applyFrames` on an open image, without the fsync: a replay of many segments syncs once, at its end (the image
 * is a private temp file until the restore checks and publishes it).
 */
export async function writeFrames(
  handle: fs.FileHandle,
  frames: Iterable<WalFrame>,
  pageSize: number,
): Promise<number> {
  let size: number | undefined;
  for (const frame of frames) {
    if (frame.page.length !== pageSize) {
      throw new Error(`frame ${frame.index} holds ${frame.page.length} bytes, not a ${pageSize}-byte page`);
    }
    await handle.write(frame.page, 0, pageSize, (frame.pageNumber - 1) * pageSize);
    if (frame.commitSize > 0) size = frame.commitSize;
  }
  if (size !== undefined) await handle.truncate(size * pageSize);
  return size ?? 0;
}
