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
  let size: number | undefined;
  try {
    for (const frame of frames) {
      if (frame.page.length !== pageSize) {
        throw new Error(`frame ${frame.index} holds ${frame.page.length} bytes, not a ${pageSize}-byte page`);
      }
      await handle.write(frame.page, 0, pageSize, (frame.pageNumber - 1) * pageSize);
      if (frame.commitSize > 0) size = frame.commitSize;
    }
    if (size !== undefined) await handle.truncate(size * pageSize);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return size ?? 0;
}
