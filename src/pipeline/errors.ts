import { EXIT, LitekeepError } from '../util/errors.js';

/** The artifact cannot be decrypted: wrong identity or passphrase, or the ciphertext is truncated/tampered. */
export class DecryptionError extends LitekeepError {
  override name = 'DecryptionError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { exitCode: EXIT.failed, stage: 'decrypt', cause: options.cause });
  }
}

/** The compressed data inside an artifact is truncated or corrupt (caught by gzip's CRC or zstd's checksum). */
export class CorruptArtifactError extends LitekeepError {
  override name = 'CorruptArtifactError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { exitCode: EXIT.failed, stage: 'decompress', cause: options.cause });
  }
}

/** A configured recipient is not something age can encrypt to. A configuration error (exit code 2). */
export class InvalidRecipientError extends LitekeepError {
  override name = 'InvalidRecipientError';
  readonly recipient: string;
  constructor(recipient: string, message: string) {
    super(message, { exitCode: EXIT.usage, stage: 'config' });
    this.recipient = recipient;
  }
}

/** An identity (secret key) string or file that age cannot use. A configuration error (exit code 2). */
export class InvalidIdentityError extends LitekeepError {
  override name = 'InvalidIdentityError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { exitCode: EXIT.usage, stage: 'config', cause: options.cause });
  }
}

/** Bad pipeline options (level out of range, recipients and passphrase together...). Exit code 2. */
export class ArtifactOptionsError extends LitekeepError {
  override name = 'ArtifactOptionsError';
  constructor(message: string) {
    super(message, { exitCode: EXIT.usage, stage: 'config' });
  }
}

/**
 * What was handed to the artifact file does not decode back to the bytes that went in (writeArtifact with
 * checkDecodes). The file must not count as a backup.
 */
export class ArtifactDecodeError extends LitekeepError {
  override name = 'ArtifactDecodeError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { exitCode: EXIT.failed, stage: 'verify', cause: options.cause });
  }
}
