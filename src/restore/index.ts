export {
  restoreBackup,
  verifyBackup,
  listCandidates,
  pickCandidate,
  fetchAndCheck,
  type RestoreOptions,
  type RestoreResult,
  type VerifyResult,
  type Candidate,
  type SelectOptions,
  type DecryptOptions,
} from './restore.js';
export { processesUsing, isLockedBySqlite, type ProcessUsingFile } from './in-use.js';
