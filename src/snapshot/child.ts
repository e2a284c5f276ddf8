/**
 * Entry point of the process that takes a snapshot. better-sqlite3 is synchronous and a large VACUUM INTO
 * blocks for seconds; in a child process it leaves the parent's timers, signals and HTTP free, and it can be
 * killed at once when a run is aborted.
 */
import { snapshotInProcess, type SnapshotRequest } from './engine.js';

// Every file SQLite creates here (the copy, its -journal) holds the database in plain text: owner only, from the
// first byte, whatever the caller's umask.
process.umask(0o077);

// An orphan has nobody to report to: when the parent dies, stop as soon as SQLite lets us.
process.once('disconnect', () => process.exit(1));

process.once('message', (request: SnapshotRequest) => {
  snapshotInProcess(request, () => process.send!({ phase: 'copied' })).then(
    (facts) => process.send!({ ok: true, facts }, () => process.exit(0)),
    (error: { code?: string; message?: string }) =>
      process.send!(
        { ok: false, failure: { code: error.code, message: String(error.message ?? error) } },
        () => process.exit(0),
      ),
  );
});
