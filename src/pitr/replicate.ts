import type { DatabaseTarget } from '../config/index.js';
import { hostOf, type DestinationSpec } from '../destinations/factory.js';
import type { Repository } from '../repository/repository.js';
import { acquireLock, LockHeldError, type Lock, type LockHolder } from '../scheduler/lock.js';
import { EXIT, LitekeepError, oneLine } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import { sleep } from '../util/timeouts.js';
import { replicationDestinations, replicationLockPath, replicationStateFile } from './capture.js';
import { CooperativeCheckpoints, readWalIndex } from './cooperative.js';
import { pinWalEnd, walIndexEnd, type WalEndPin } from './fingerprint.js';
import { assertWalMode, readShipperState, WalShipper, type ShipResult } from './shipper.js';
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
/** After a base that took d, the next one starts no sooner than BASE_PACING × d later. */
const BASE_PACING = 4;
/** How often the WAL is read between passes (follow mode): well inside the life of a busy app's WAL generation. */
const READ_AHEAD_MS = 50;
/**
 * A pass that has read and stored nothing for this long (or 30 intervals, when longer) is reported as stalled:
 * every request has its own timeout, so this is a hang (a storage that never answers) or a bug, and shipping
 * has stopped until it ends. Reported once per pass; the lag in status and /metrics shows it too.
 */
const STALLED_AFTER_MS = 10 * 60_000;

export type ReplicationEvent =
  | {
      kind: 'started';
      database: string;
      destinations: string[];
      intervalMs: number;
      mode: 'follow' | 'cooperative';
    }
  | { kind: 'shipped'; database: string; destination: string; result: ShipResult }
  | { kind: 'gap'; database: string; destination: string; reason: 'start' | 'lost-frames' }
  | { kind: 'error'; database: string; destination: string; error: string }
  | { kind: 'base'; database: string; ok: boolean; detail: string }
  /** Another process replicates this database: nothing is shipped here until it lets go (told once per holder). */
  | { kind: 'waiting'; database: string; holder: LockHolder }
  /** The replication lock was taken after waiting for `after`. */
  | { kind: 'claimed'; database: string; after: LockHolder }
  /** Cooperative mode: litekeep's checkpoint (what it did), or a problem with it (`warning`). */
  | { kind: 'checkpoint'; database: string; log: number; checkpointed: number }
  | { kind: 'warning'; database: string; message: string };

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
  /** How long a pass may run before it is reported as stalled (default 10 minutes, or 30 intervals). */
  stalledAfterMs?: number;
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
  /** Cooperative mode only: the pin and the checkpoints (src/pitr/cooperative.ts). */
  private readonly checkpoints: CooperativeCheckpoints | undefined;
  /** Cooperative mode: false once the WAL was seen backfilled past what litekeep had shipped. */
  private onlyOurCheckpoints = true;
  private lastWarning: string | undefined;
  /** When the last fingerprint was taken (0: none yet, so the first pass with something to ship takes one). */
  private lastFingerprintAt = 0;
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
    if (target.settings.replicate.mode === 'cooperative')
      this.checkpoints = new CooperativeCheckpoints(target.path);
  }

  get mode(): 'follow' | 'cooperative' {
    return this.checkpoints ? 'cooperative' : 'follow';
  }

  private warn(message: string): void {
    // The same problem every pass is one report.
    if (message !== this.lastWarning)
      this.options.onEvent?.({ kind: 'warning', database: this.target.name, message });
    this.lastWarning = message;
  }

  /**
   * Cooperative mode rests on the app not checkpointing. A backfill past the position of a destination (in the
   * same generation) is not litekeep's: the app checkpoints after all, so resets are no longer trusted as whole.
   */
  private async watchForForeignCheckpoints(): Promise<void> {
    if (!this.onlyOurCheckpoints) return;
    const index = await readWalIndex(this.target.path);
    if (!index) return;
    for (const follower of this.followers) {
      // From the state file: a shipper is made at its first pass, and the first pass after a restart counts.
      const state = await readShipperState(replicationStateFile(this.target, follower.spec.name)).catch(
        () => undefined,
      );
      const position = state?.position;
      if (!position) continue;
      // litekeep checkpoints a generation only after every destination shipped into it: of a generation the
      // position has not reached, nothing is shipped, so any backfill there is someone else's.
      const shipped = position.salt1 === index.salt1 && position.salt2 === index.salt2 ? position.frame : 0;
      if (index.nBackfill > shipped) {
        this.onlyOurCheckpoints = false;
        this.warn(
          `the WAL of ${this.target.name} was checkpointed past what litekeep had shipped to ${follower.spec.name} ` +
            `(frame ${index.nBackfill}, shipped ${shipped}): the app checkpoints itself, so cooperative mode ` +
            `cannot prevent gaps; set PRAGMA wal_autocheckpoint=0 in the app (WAL resets count as gaps again ` +
            `unless proven, until litekeep restarts)`,
        );
        return;
      }
    }
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
      ...(this.checkpoints ? { cooperative: () => this.onlyOurCheckpoints } : {}),
    });
    return follower.shipper;
  }

  /** One pass over every destination; a destination that fails is reported and tried again next pass. */
  async passOnce(): Promise<void> {
    // Never beside another replicator of the same database: one position, one set of checkpoints.
    await this.claim();
    const database = this.target.name;
    const owed: { reason: string; gap: boolean }[] = [];
    // Cooperative mode: pin a snapshot, ship past it everywhere, checkpoint up to it, unpin (cooperative.ts).
    let pinned = false;
    if (this.checkpoints) {
      await this.watchForForeignCheckpoints();
      try {
        this.checkpoints.pin();
        pinned = true;
      } catch (error) {
        // Shipping is safe without it; only this pass's checkpoint is skipped. No wal-index to open (the app
        // is not running and left none): nothing to checkpoint either, and nothing to say.
        if ((error as { code?: string }).code !== 'SQLITE_CANTOPEN')
          this.warn(
            `cannot begin a read transaction on ${database} (no checkpoint this pass): ${oneLine(error)}`,
          );
      }
    }
    let everyDestinationShipped = true;
    // Held through this pass's shipping, so that what the app committed while the rows were counted is read
    // before a checkpoint of the app's can reset the WAL over it.
    let fingerprinting: WalEndPin | undefined;
    try {
      fingerprinting = await this.fingerprintIfDue();
      await this.shipEverywhere(owed, () => (everyDestinationShipped = false));
      // A destination that failed is behind: its frames must stay in the WAL, so nothing is checkpointed.
      if (pinned && everyDestinationShipped) {
        try {
          const result = this.checkpoints!.checkpoint();
          this.options.onEvent?.({
            kind: 'checkpoint',
            database,
            log: result.log,
            checkpointed: result.checkpointed,
          });
        } catch (error) {
          this.warn(`the checkpoint of ${database} failed (tried again next pass): ${oneLine(error)}`);
        }
      }
    } finally {
      fingerprinting?.release();
      if (pinned) this.checkpoints!.unpin();
    }
    this.takeBaseIfOwed(owed);
  }

  /**
   * Every `replicate.fingerprintEvery`, the fingerprint of the database at the WAL's last commit, handed to every
   * shipper for the segment that ships it (src/pitr/fingerprint.ts). Only when some destination has that commit
   * still to ship: an idle database is not read again and again.
   */
  private async fingerprintIfDue(): Promise<WalEndPin | undefined> {
    const every = this.target.settings.replicate.fingerprintEvery ?? 0;
    if (every <= 0 || Date.now() - this.lastFingerprintAt < every) return undefined;
    const end = walIndexEnd(this.target.path);
    if (!end || end.mxFrame === 0) return undefined;
    const shippers: WalShipper[] = [];
    for (const follower of this.followers)
      // A destination that cannot be opened now is reported by the pass that follows.
      shippers.push(
        ...(await this.shipperOf(follower)
          .then((s) => [s])
          .catch(() => [])),
      );
    let unshipped = false;
    for (const shipper of shippers) {
      const at = await shipper.position().catch(() => undefined);
      if (!at || at.salt1 !== end.salt1 || at.salt2 !== end.salt2 || at.frame < end.mxFrame) unshipped = true;
    }
    if (!unshipped) return undefined;
    let pin: WalEndPin | undefined;
    try {
      // A moment that cannot be pinned down (cheap: no rows counted) is tried again next pass.
      pin = pinWalEnd(this.target.path);
      if (!pin) return undefined;
      // Before the count blocks the event loop: what the WAL holds now, a generation's tail included.
      if (!this.checkpoints) await this.readAheadEverywhere();
      const taken = pin.fingerprint();
      for (const shipper of shippers) shipper.noteFingerprint(taken);
      return pin;
    } catch (error) {
      pin?.release();
      this.warn(`cannot read the fingerprint of ${this.target.name} (tried again later): ${oneLine(error)}`);
      return undefined;
    } finally {
      if (pin) this.lastFingerprintAt = Date.now();
    }
  }

  private async shipEverywhere(owed: { reason: string; gap: boolean }[], failed: () => void): Promise<void> {
    const database = this.target.name;
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
          failed();
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
  }

  private takeBaseIfOwed(owed: { reason: string; gap: boolean }[]): void {
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
            if (covered.includes(f.spec.name))
              await f.shipper?.baseTaken(startedAt, Date.now()).catch(() => {});
          if (covered.length === this.followers.length) {
            this.baseBackoffMs = BASE_RETRY_MIN_MS;
            // Gaps that come back to back (an app outrunning litekeep on a loaded machine) would otherwise have
            // it copy the whole database without pause, which loads the machine further: bases take at most a
            // fifth of the time. Shipping goes on meanwhile; the gap is reported and owed a base until then.
            this.baseRetryAt = Date.now() + BASE_PACING * (Date.now() - startedAt);
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
      mode: this.mode,
    });
    const watch = this.watchPasses(
      this.options.stalledAfterMs ?? Math.max(STALLED_AFTER_MS, 30 * this.intervalMs),
    );
    try {
      while (!signal.aborted) {
        const started = Date.now();
        if (!options.waitForLock || (await this.claimOrWait())) {
          watch.passing(true);
          await this.passOnce().finally(() => watch.passing(false));
        }
        // Between passes the WAL is read ahead (follow mode): an app whose checkpoints reset the WAL several
        // times a second would otherwise overwrite commits before the next pass read them (a gap). Stopping
        // ends the wait early; the loop's condition then ends the run.
        while (!signal.aborted && Date.now() - started < this.intervalMs) {
          const left = this.intervalMs - (Date.now() - started);
          await sleep(Math.min(READ_AHEAD_MS, left), signal).catch(() => {});
          if (!signal.aborted && !this.checkpoints && this.lock && (await this.readAheadEverywhere())) break;
        }
      }
    } finally {
      watch.stop();
      await this.baseRunning;
      this.close();
    }
  }

  /** Reads ahead for every destination; true when one holds a full segment's worth (ship it now). */
  private async readAheadEverywhere(): Promise<boolean> {
    let full = false;
    for (const follower of this.followers) {
      if (!follower.shipper) continue;
      // A failure here is the next pass's to report (it reads the same WAL).
      if (await follower.shipper.readAhead().catch(() => false)) full = true;
    }
    return full;
  }

  /** Waits for a base snapshot being taken (tests, `replicate --once`). */
  async settled(): Promise<void> {
    while (this.baseRunning) await this.baseRunning;
  }

  /** Reports a pass that made no progress for `stalledAfterMs` (once per pass); `stop` ends the watch. */
  private watchPasses(stalledAfterMs: number): { passing(running: boolean): void; stop(): void } {
    let startedAt: number | undefined;
    let told = false;
    const timer = setInterval(
      () => {
        if (startedAt === undefined || told) return;
        // A long pass that keeps reading and storing (catching up after an outage) is not stalled.
        const progress = Math.max(startedAt, ...this.followers.map((f) => f.shipper?.progressAt ?? 0));
        if (Date.now() - progress < stalledAfterMs) return;
        told = true;
        this.options.onEvent?.({
          kind: 'error',
          database: this.target.name,
          destination: this.destinations.join(', '),
          error:
            `a replication pass has made no progress for ${formatDuration(Date.now() - progress)}: nothing is ` +
            `shipped until it does (a storage that does not answer?); if it does not recover, restart litekeep`,
        });
      },
      Math.min(5000, stalledAfterMs),
    );
    timer.unref();
    return {
      passing(running) {
        startedAt = running ? Date.now() : undefined;
        if (!running) told = false;
      },
      stop: () => clearInterval(timer),
    };
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
    // Before the lock: the next replicator must not find litekeep's connections still pinning the WAL.
    this.checkpoints?.close();
    this.lock?.releaseSync();
    this.lock = undefined;
  }
}
