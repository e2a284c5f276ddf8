export { takeSnapshot, type SnapshotOptions } from './snapshot.js';
export { snapshotInProcess, type SnapshotFacts, type SnapshotMode, type SnapshotRequest } from './engine.js';
export {
  assertSqliteFile,
  inspectDatabase,
  fingerprintOf,
  compareFingerprints,
  type DatabaseFacts,
  type IntegrityMode,
} from './inspect.js';
