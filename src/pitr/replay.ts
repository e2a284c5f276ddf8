import fs from 'node:fs/promises';
import type { ReplayStep } from './plan.js';
import type { Segment } from './segment.js';

/**
 * Applies a recovery plan's steps to a base image, as SQLite's checkpoint applies a WAL: every page gets the
 * image of its newest frame up to the plan's last commit, and the file is cut (or grown) to the size that
 * commit records. Frames are page images, so the older frames of a page change nothing once its newest one is
 * written: segments are read newest first and each page is written once (a bitset says which are done). A
 * replay of thousands of segments that rewrite the same few pages is then as long as the pages it touches, not
 * as its frames (it wrote and fsynced every frame of every segment before).
 *
 * Memory: one segment at a time (each decoded and checked by `load`) and one bit per page of the database.
 * The image is synced once, at the end: it is a private temp file until the restore has checked it.
 */
export async function replayOnto(
  imagePath: string,
  steps: ReplayStep[],
  pageSize: number,
  load: (id: string) => Promise<Segment>,
): Promise<void> {
  const last = steps.at(-1);
  if (!last) return;
  const finalCommit = last.segment.metadata.commits.find((c) => c.frame === last.throughFrame);
  if (!finalCommit)
    throw new Error(`WAL segment ${last.segment.id} has no commit at frame ${last.throughFrame} to stop at`);
  const pages = finalCommit.pages;
  const written = new Uint8Array(Math.ceil((pages + 1) / 8));
  const handle = await fs.open(imagePath, 'r+');
  try {
    for (let s = steps.length - 1; s >= 0; s--) {
      const step = steps[s];
      const segment = await load(step.segment.id);
      if (segment.metadata.pageSize !== pageSize) {
        throw new Error(
          `WAL segment ${step.segment.id} has ${segment.metadata.pageSize}-byte pages, the base ${pageSize}-byte pages`,
        );
      }
      for (let f = segment.frames.length - 1; f >= 0; f--) {
        const frame = segment.frames[f];
        const n = frame.pageNumber;
        // Past the final size: cut off by the final truncation whatever its image.
        if (frame.index > step.throughFrame || n > pages || written[n >> 3] & (1 << (n & 7))) continue;
        if (frame.page.length !== pageSize)
          throw new Error(
            `frame ${frame.index} holds ${frame.page.length} bytes, not a ${pageSize}-byte page`,
          );
        await handle.write(frame.page, 0, pageSize, (n - 1) * pageSize);
        written[n >> 3] |= 1 << (n & 7);
      }
    }
    await handle.truncate(pages * pageSize);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
