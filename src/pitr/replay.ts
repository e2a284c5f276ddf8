import { applyFrames } from './apply.js';
import type { ReplayStep } from './plan.js';
import type { Segment } from './segment.js';

/**
 * Applies a recovery plan's steps to a base image, one segment at a time (each decoded and checked by
 * `load`), so memory holds one segment however long the replay.
 */
export async function replayOnto(
  imagePath: string,
  steps: ReplayStep[],
  pageSize: number,
  load: (id: string) => Promise<Segment>,
): Promise<void> {
  for (const step of steps) {
    const segment = await load(step.segment.id);
    if (segment.metadata.pageSize !== pageSize) {
      throw new Error(
        `WAL segment ${step.segment.id} has ${segment.metadata.pageSize}-byte pages, the base ${pageSize}-byte pages`,
      );
    }
    await applyFrames(
      imagePath,
      segment.frames.filter((f) => f.index <= step.throughFrame),
      pageSize,
    );
  }
}
