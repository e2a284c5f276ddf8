import fs from 'node:fs/promises';
import { writeFileAtomic } from '../util/fs.js';
import type { CommitRef } from './plan.js';
import { encodeSegment, type SegmentMetadata } from './segment.js';
import { readCommitted, type WalPosition } from './wal.js';

/**
 * Follows one database's WAL and turns every committed transaction group into a segment, handed to a sink (a
 * destination, a local folder). The position is recorded only after the sink holds the segment, so a kill at
 * any moment ships a group again (under the same name) rather than skipping it.
 */

/** Where segments go. `put` must not report success before the segment is durable. */
export interface SegmentSink {
  put(name: string, bytes: Buffer): Promise<void>;
}

export interface ShipperState {
  format: 1;
  position: WalPosition | undefined;
  /** The last commit shipped: what a base snapshot taken now records as `shippedBefore`. */
  lastShipped: CommitRef | undefined;
}

export interface ShipResult {
  segments: string[];
  frames: number;
  bytes: number;
  /** Frames may have been lost since the last pass (a reset litekeep could not prove whole, or a first start). */
  gap?: 'start' | 'lost-frames';
}

export interface ShipperOptions {
  database: string;
  host: string;
  /** The database file; its `-wal` is followed. */
  databasePath: string;
  /** JSON file holding the position between runs (private, written atomically). */
  stateFile: string;
  sink: SegmentSink;
  /** Compression and encryption of a segment, applied before the sink sees it. */
  seal?: (segment: Buffer) => Promise<Buffer>;
  now?: () => number;
  /** Bytes of frames per segment at most (a large transaction group spans several). */
  segmentBytes?: number;
}

/** A segment's name: in shipping order when sorted, and the same for the same frames when shipped again. */
export function segmentName(m: Pick<SegmentMetadata, 'generation' | 'firstFrame' | 'lastFrame'>): string {
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
  return `${hex(m.generation.checkpointSequence, 8)}-${hex(m.generation.salt1, 8)}-${hex(m.firstFrame, 8)}-${hex(m.lastFrame, 8)}.lkwal`;
}

export class ReplicationError extends Error {
  override name = 'ReplicationError';
}

/** Checks that the database exists and is in WAL mode (byte 18 of its header is 2): only then is there a WAL. */
export async function assertWalMode(databasePath: string): Promise<void> {
  let head: Buffer;
  try {
    const handle = await fs.open(databasePath, 'r');
    try {
      head = Buffer.alloc(100);
      await handle.read(head, 0, 100, 0);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new ReplicationError(
      `cannot read ${databasePath} (${(error as NodeJS.ErrnoException).code ?? String(error)}); check the database path`,
    );
  }
  if (!head.subarray(0, 16).equals(Buffer.from('SQLite format 3\0', 'latin1'))) {
    throw new ReplicationError(`${databasePath} is not a SQLite database; check the database path`);
  }
  if (head[18] !== 2) {
    throw new ReplicationError(
      `${databasePath} is not in WAL mode, so there is no WAL to ship; switch it with PRAGMA journal_mode=WAL (the app keeps it)`,
    );
  }
}

export class WalShipper {
  private state: ShipperState | undefined;

  constructor(private readonly options: ShipperOptions) {}

  private async loadState(): Promise<ShipperState> {
    if (this.state) return this.state;
    try {
      const parsed = JSON.parse(await fs.readFile(this.options.stateFile, 'utf8')) as ShipperState;
      if (parsed.format !== 1) {
        throw new ReplicationError(
          `${this.options.stateFile} was written by another litekeep version (format ${String(parsed.format)}); upgrade litekeep`,
        );
      }
      this.state = parsed;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        if (error instanceof ReplicationError) throw error;
        // A state file that does not parse is no position at all: start over, which counts as a gap.
        this.state = { format: 1, position: undefined, lastShipped: undefined };
      } else this.state = { format: 1, position: undefined, lastShipped: undefined };
    }
    return this.state!;
  }

  /** The last commit shipped (for a base snapshot's `shippedBefore`). */
  async lastShipped(): Promise<CommitRef | undefined> {
    return (await this.loadState()).lastShipped;
  }

  /** One pass: ships everything committed since the last pass, as one or more segments. */
  async shipOnce(): Promise<ShipResult> {
    const state = await this.loadState();
    const walPath = `${this.options.databasePath}-wal`;
    const result: ShipResult = { segments: [], frames: 0, bytes: 0 };
    for (;;) {
      const read = await readCommitted(walPath, state.position, { limitBytes: this.options.segmentBytes });
      if (read.frames.length === 0 || !read.header || !read.next) return result;
      const header = read.header;
      let after: SegmentMetadata['after'];
      if (!state.position) {
        after = 'start';
        result.gap ??= 'start';
      } else if (read.reset) {
        after = read.reset.lostFrames ? 'gap' : 'reset';
        if (read.reset.lostFrames) result.gap = 'lost-frames';
      } else after = 'continuation';
      const startChecksum = after === 'continuation' ? state.position!.checksum : header.checksum;
      const generation = {
        salt1: header.salt1,
        salt2: header.salt2,
        checkpointSequence: header.checkpointSequence,
        bigEndianChecksum: header.bigEndianChecksum,
      };
      const plain = encodeSegment(
        {
          database: this.options.database,
          host: this.options.host,
          pageSize: header.pageSize,
          generation,
          after,
        },
        startChecksum,
        read.frames,
        (this.options.now ?? Date.now)(),
      );
      const name = segmentName({
        generation,
        firstFrame: read.frames[0].index,
        lastFrame: read.frames.at(-1)!.index,
      });
      const sealed = this.options.seal ? await this.options.seal(plain) : plain;
      await this.options.sink.put(name, sealed);
      state.position = read.next;
      state.lastShipped = { generation: { ...generation }, frame: read.next.frame };
      await writeFileAtomic(this.options.stateFile, JSON.stringify(state));
      result.segments.push(name);
      result.frames += read.frames.length;
      result.bytes += sealed.length;
    }
  }

  /** Ships every `intervalMs` until the signal aborts; `onPass` hears each pass (errors included). */
  async run(
    intervalMs: number,
    signal: AbortSignal,
    onPass: (outcome: { result?: ShipResult; error?: unknown }) => Promise<void> | void,
  ): Promise<void> {
    await assertWalMode(this.options.databasePath);
    while (!signal.aborted) {
      try {
        await onPass({ result: await this.shipOnce() });
      } catch (error) {
        await onPass({ error });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, intervalMs);
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/** A folder as a sink: each segment written atomically (temp, fsync, rename), private to its owner. */
export function folderSink(
  dir: string,
): SegmentSink & { list(): Promise<string[]>; get(name: string): Promise<Buffer> } {
  return {
    put: (name, bytes) => writeFileAtomic(`${dir}/${name}`, bytes),
    list: async () => {
      try {
        return (await fs.readdir(dir)).filter((n) => n.endsWith('.lkwal')).sort();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw error;
      }
    },
    get: (name) => fs.readFile(`${dir}/${name}`),
  };
}
