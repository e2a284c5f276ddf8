export {
  restoreBackup,
  verifyBackup,
  verifyPoints,
  chooseCandidate,
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
export { processesUsing, type ProcessUsingFile } from './in-use.js';
export { probeLiveDatabase, type LiveState } from './replace.js';
