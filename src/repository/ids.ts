import crypto from 'node:crypto';

/**
 * How a repository names chunks: plain sha256 when unencrypted, HMAC-SHA256 with the repository's id key when
 * encrypted, so that the store cannot test a guessed page against the ids it holds.
 */
export interface IdHasher {
  readonly kind: 'sha256' | 'hmac-sha256';
  /** Identifies the hashing (kind and key) without revealing the key: equal hashers give equal ids. */
  readonly fingerprint: string;
  id(data: Uint8Array): Buffer;
}

export function idHasher(idKey?: Buffer): IdHasher {
  if (!idKey) {
    return {
      kind: 'sha256',
      fingerprint: 'sha256',
      // The one-shot form: a page is hashed hundreds of thousands of times a run, and it allocates less.
      id: (data) => crypto.hash('sha256', data, 'buffer'),
    };
  }
  if (idKey.length !== 32) throw new Error('an id key is 32 bytes');
  const key = crypto.createSecretKey(idKey);
  return {
    kind: 'hmac-sha256',
    fingerprint: `hmac-sha256:${crypto.createHmac('sha256', idKey).update('litekeep hasher fingerprint').digest('hex').slice(0, 16)}`,
    id: (data) => crypto.createHmac('sha256', key).update(data).digest(),
  };
}

/** Short form of an id for messages: 12 hex digits, as git and restic show them. */
export function shortId(id: string | Buffer): string {
  return (typeof id === 'string' ? id : id.toString('hex')).slice(0, 12);
}
