import { LitekeepError } from '../util/errors.js';

/**
 * An object of a repository is missing, truncated or fails its checks: what it stands for cannot be trusted.
 * The message names the object; `key` is its key in the store. Verification counts this as a failed backup,
 * not as a read error.
 */
export class RepositoryDamagedError extends LitekeepError {
  override name = 'RepositoryDamagedError';
  constructor(
    message: string,
    readonly key?: string,
    cause?: unknown,
  ) {
    super(message, { stage: 'verify', cause });
  }
}
