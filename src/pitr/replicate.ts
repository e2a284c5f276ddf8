import type { DatabaseTarget } from '../config/index.js';
import { hostOf, type DestinationSpec } from '../destinations/factory.js';
import type { Repository } from '../repository/repository.js';
import { acquireLock, LockHeldError, type Lock, type LockHolder } from '../scheduler/lock.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { sleep } from '../util/timeouts.js';
import { replicationDestinations, replicationLockPath, replicationStateFile } from './capture.js';
import { assertWalMode, WalShipper, type ShipResult } from './shipper.js';
import { RepositorySegments } from './stored.js';

/**
 * Replication of one database (issue 15): a WalShipper per `format: incremental` destination, each with its
 * own position, so that one destination being down never holds the others back. When a shipper reports a gap
 * (a first start, or frames the app's checkpoint reset before they were read) a base snapshot is taken at
 * once, so that recovery is whole again from then on. A replicator holds its database's replication lock for as
 * long as it ships (one replicator per database, across processes; see `claim`).
 */

const BASE_RETRY_MIN_MS = 60_000;
const BASE_RETRY_MAX_MS = 15 * 60_000;

export type ReplicationEvent =
  | { kind: 'started'; database: string; destinations: string[]; intervalMs: number }
  | { kind: 'shipped'; database: string; destination: string; result: ShipResult }
  | { kind: 'gap'; database: string; destination: string; reason: 'start' | 'lost-frames' }
  | { kind: 'error'; database: string; destination: string; error: string }
  | { kind: 'base'; database: string; ok: boolean; detail: string }
  /** Another process replicates this database: nothing is shipped here until it lets go (told once per holder). */
  | { kind: 'waiting'; database: string; holder: LockHolder }
  /** The replication lock was taken after waiting for `after`. */
  | { kind: 'claimed'; database: string; after: LockHolder };

/** Another live process replicates the database (exit 1: nothing is wrong with the command, it is a moment). */
export class ReplicationHeldError extends LitekeepError {
  override name = 'ReplicationHeldError';
  constructor(
    database: string,
    readonly holder: LockHolder,
  ) {
    super(
      `${database} is already replicated by pid ${holder.pid} on host ${holder.host} (${holder.purpose}, since ` +
        `${holder.startedAt}); a database has one replicator at a time: stop that process first, or leave ` +
        `the replication to it`,
      { exitCode: EXIT.failed, stage: 'lock' },
    );
  }
}

export interface ReplicatorOptions {
  intervalMs?: number;
  onEvent?: (event: ReplicationEvent) => void;
  /**
   * Takes a base snapshot (a backup run writing to the incremental destinations); resolves with the
   * destinations that got one. Called when a shipper owes a base (a gap, a fresh start), until each has one.
   */
  takeBase: (reason: string, gap: boolean) => Promise<string[]>;
  /** Opens the repository on a destination for writing (the backup run's own opener). */
  openRepository: (spec: DestinationSpec) => Promise<Repository>;
  /** What this replicator is, for whoever finds the lock taken: `litekeep replicate`, `the litekeep daemon`. */
  holder?: string;
}

interface Follower {
  spec: DestinationSpec;
  repo?: Repository;
  shipper?: WalShipper;
  lastError?: string;
}

export class Replicator {
  private readonly followers: Follower[];
  private baseRunning: Promise<void> | undefined;
  /** A base that failed is tried again after a pause that doubles (1 min to 15 min), not on every pass. */
  private baseRetryAt = 0;
  private baseBackoffMs = BASE_RETRY_MIN_MS;
  private lock: Lock | undefined;
  /** The other process holding the replication lock while this one waits for it. */
  private heldBy: LockHolder | undefined;
  readonly intervalMs: number;

  constructor(
    readonly target: DatabaseTarget,
    private readonly options: ReplicatorOptions,
  ) {
    this.intervalMs = options.intervalMs ?? target.settings.replicate.interval ?? 1000;
    const specs = replicationDestinations(target);
    if (specs.length === 0)
      throw new LitekeepError(
        `${target.name} has no format: incremental destination to replicate to; add one (destinations: [{ name, type: s3|local|google-drive, format: incremental, ... }])`,
        { exitCode: EXIT.usage },
      );
    this.followers = specs.map((spec) => ({ spec }));
  }

  get destinations(): string[] {
    return this.followers.map((f) => f.spec.name);
  }

  /** Checks what can be checked before the first pass: the database is there and in WAL mode. */
  async prepare(): Promise<void> {
    try {
      await assertWalMode(this.target.path);
    } catch (error) {
      throw new LitekeepError(oneLine(error), { exitCode: EXIT.usage });
    }
  }

  /**
   * Takes the database's replication lock (kept until `close`), or fails with ReplicationHeldError naming the
   * process that holds it. The lock is the kernel's (scheduler/lock.ts): a holder killed with SIGKILL leaves
   * nothing that blocks the next one. `waitMs` covers someone only looking at the lock (`status`) that moment.
   */
  async claim(options: { waitMs?: number } = {}): Promise<void> {
    if (this.lock) return;
    try {
      this.lock = await acquireLock(replicationLockPath(this.target), {
        waitMs: options.waitMs ?? 1000,
        pollMs: 100,
        purpose: `replication of ${this.target.name} by ${this.options.holder ?? 'litekeep'}`,
      });
    } catch (error) {
      if (error instanceof LockHeldError) throw new ReplicationHeldError(this.target.name, error.holder);
      throw error;
    }
  }

  /**
   * The lock, taken now if it is free; false while another process holds it (told once per holder, and when
   * it is taken after all), so that the daemon waits for it instead of shipping beside another replicator.
   */
  private async claimOrWait(): Promise<boolean> {
    if (this.lock) return true;
    try {
      await this.claim({ waitMs: 0 });
    } catch (error) {
      if (!(error instanceof ReplicationHeldError)) throw error;
      const { holder } = error;
      if (!this.heldBy || this.heldBy.pid !== holder.pid || this.heldBy.startedAt !== holder.startedAt)
        this.options.onEvent?.({ kind: 'waiting', database: this.target.name, holder });
      this.heldBy = holder;
      return false;
    }
    if (this.heldBy)
      this.options.onEvent?.({ kind: 'claimed', database: this.target.name, after: this.heldBy });
    this.heldBy = undefined;
    return true;
  }

  private async shipperOf(follower: Follower): Promise<WalShipper> {
    if (follower.shipper) return follower.shipper;
    const repo = await this.options.openRepository(follower.spec);
    const segments = new RepositorySegments(repo);
    follower.repo = repo;
    follower.shipper = new WalShipper({
      database: this.target.name,
      host: hostOf(this.target),
      databasePath: this.target.path,
      stateFile: replicationStateFile(this.target, follower.spec.name),
      sink: segments,
      seal: (plain) => segments.seal(plain),
      repository: repo.id,
    });
    return follower.shipper;
  }

  /** One pass over every destination; a destination that fails is reported and tried again next pass. */
  async passOnce(): Promise<void> {
    // Never beside another replicator of the same database: one position, one set of checkpoints.
    await this.claim();
    const database = this.target.name;
    const owed: { reason: string; gap: boolean }[] = [];
    await Promise.all(
      this.followers.map(async (follower) => {
        const destination = follower.spec.name;
        try {
          const shipper = await this.shipperOf(follower);
          const result = await shipper.shipOnce();
          follower.lastError = undefined;
          if (result.segments.length)
            this.options.onEvent?.({ kind: 'shipped', database, destination, result });
          if (result.gap) this.options.onEvent?.({ kind: 'gap', database, destination, reason: result.gap });
          const base = await shipper.baseOwed();
          if (base)
            owed.push({
              gap: base.gap,
              reason: base.gap
                ? `the WAL was reset before litekeep read some commits for ${destination}`
                : `replication to ${destination} started`,
            });
        } catch (error) {
          const message = oneLine(error);
          // The same failure every second is one report, not thousands.
          if (message !== follower.lastError)
            this.options.onEvent?.({ kind: 'error', database, destination, error: message });
          follower.lastError = message;
          // A repository that failed may be a client that broke: opened again next pass.
          follower.repo?.store.close();
          follower.repo = undefined;
          follower.shipper = undefined;
        }
      }),
    );
    if (owed.length && !this.baseRunning && Date.now() >= this.baseRetryAt) {
      const reason = owed.map((o) => o.reason).join('; ');
      const startedAt = Date.now();
      // Shipping goes on while the base is taken: stopping it would let the app's checkpoints make more gaps.
      this.baseRunning = this.options
        .takeBase(
          reason,
          owed.some((o) => o.gap),
        )
        .catch(() => [] as string[])
        .then(async (covered) => {
          for (const f of this.followers)
            if (covered.includes(f.spec.name)) await f.shipper?.baseTaken(startedAt).catch(() => {});
          if (covered.length === this.followers.length) {
            this.baseBackoffMs = BASE_RETRY_MIN_MS;
            return;
          }
          this.baseRetryAt = Date.now() + this.baseBackoffMs;
          this.baseBackoffMs = Math.min(this.baseBackoffMs * 2, BASE_RETRY_MAX_MS);
        })
        .finally(() => {
          this.baseRunning = undefined;
        });
    }
  }

  /**
   * Passes every interval until the signal aborts; then waits for a base being taken and closes. With
   * `waitForLock` (the daemon) a database another process replicates is not shipped, and its lock is tried
   * again every interval; without, that is a ReplicationHeldError.
   */
  async run(signal: AbortSignal, options: { waitForLock?: boolean } = {}): Promise<void> {
    await this.prepare();
    this.options.onEvent?.({
      kind: 'started',
      database: this.target.name,
      destinations: this.destinations,
      intervalMs: this.intervalMs,
    });
    try {
      while (!signal.aborted) {
        const started = Date.now();
        if (!options.waitForLock || (await this.claimOrWait())) await this.passOnce();
        // Stopping ends the wait early; the loop's condition then ends the run.
        await sleep(Math.max(0, this.intervalMs - (Date.now() - started)), signal).catch(() => {});
      }
    } finally {
      await this.baseRunning;
      this.close();
    }
  }

  /** Waits for a base snapshot being taken (tests, `replicate --once`). */
  async settled(): Promise<void> {
    while (this.baseRunning) await this.baseRunning;
  }

  /** Who holds this database's replication lock while this replicator waits for it (the daemon's status). */
  get waitingFor(): LockHolder | undefined {
    return this.heldBy;
  }

  close(): void {
    for (const f of this.followers) {
      f.repo?.store.close();
      f.repo = undefined;
      f.shipper = undefined;
    }
    this.lock?.releaseSync();
    this.lock = undefined;
  }
}
