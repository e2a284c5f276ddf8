/**
 * Incremental backups (issue 14, phase 1): a page-aligned, content-addressed repository on a destination.
 * docs/format.md specifies the format. The rest of litekeep uses only what is exported here and the few
 * modules it names (run, candidates, status, check, destination).
 */
export { REPOSITORY_VERSION, SNAPSHOT_VERSION, NewerFormatError, FormatError } from './format.js';
export type { RepositoryConfig, SnapshotBody, SnapshotFacts } from './format.js';
export { RepositoryDamagedError } from './errors.js';
export type { BlobStore, BlobInfo } from './store.js';
export { BlobNotFoundError } from './store.js';
export { LocalBlobStore } from './stores/local.js';
export { S3BlobStore } from './stores/s3.js';
export { DriveBlobStore } from './stores/drive.js';
export { Repository } from './repository.js';
export { LocalIndex, syncLocalIndex } from './local-index.js';
export { writeSnapshot, type SnapshotImage, type SnapshotWritten } from './writer.js';
export { restoreImage } from './reader.js';
export { checkRepository, checkDestinations, type CheckReport } from './check.js';
export { forgetAndCollect, type CollectResult } from './collect.js';
export { listSnapshots, type SnapshotInfo } from './snapshots.js';
export { isIncremental, openRepositoryStore, repositoryHosts } from './destination.js';
export {
  pruneRepository,
  snapshotToDestination,
  type RepositoryPruneResult,
  type SnapshotOutcome,
} from './run.js';
export { formatOf, type DestinationFormat } from './settings.js';
