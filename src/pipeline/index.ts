export type { Compression } from '../naming.js';
export {
  writeArtifact,
  openArtifact,
  restoreArtifactToFile,
  PlainBacklog,
  type ArtifactOptions,
  type ArtifactResult,
  type OpenOptions,
} from './artifact.js';
export { readIdentityFile, generateIdentity, validateRecipients, isWrongKey } from './age.js';
export { createSha256Counter, sha256File, Sha256Counter } from './hash.js';
export {
  DecryptionError,
  CorruptArtifactError,
  InvalidRecipientError,
  InvalidIdentityError,
  ArtifactOptionsError,
  ArtifactDecodeError,
} from './errors.js';
export { DEFAULT_LEVEL, validateCompression } from './compression.js';
