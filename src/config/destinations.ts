import { MAX_PACK_SIZE, MIN_PACK_SIZE } from '../repository/format.js';
import { parseRetentionPolicy } from '../retention/index.js';
import { redactUrl } from '../util/redact.js';
import { ConfigError } from './settings.js';

/**
 * The settings each type of `destinations:` entry takes, and the checks that make an impossible one stop
 * litekeep when the configuration loads (exit 2, naming the key and its source) rather than at upload time.
 * A destination that is only unreachable is not a configuration error: that is found out, and reported, when
 * a run tries it.
 */

export type DestinationType = 'local' | 'google-drive' | 's3' | 'rclone' | 'sftp';

/** `format` (full | incremental) and `packSize` (incremental only) are src/repository/'s: docs/format.md. */
export const COMMON_DESTINATION_KEYS = ['name', 'type', 'retention', 'enabled', 'format', 'packSize'];
export const DESTINATION_KEYS: Record<DestinationType, string[]> = {
  local: ['path'],
  'google-drive': [
    'credentials',
    'folder',
    'folderId',
    'trash',
    'chunkSize',
    'apiUrl',
    'tokenUrl',
    'authUrl',
  ],
  s3: [
    'bucket',
    'prefix',
    'region',
    'endpoint',
    'forcePathStyle',
    'storageClass',
    'serverSideEncryption',
    'accessKeyId',
    'secretAccessKey',
    'partSize',
    'checksumMode',
    'maxAttempts',
  ],
  rclone: ['remote', 'rclone', 'rcloneConfig', 'flags'],
  sftp: ['host', 'port', 'user', 'path', 'keyFile', 'passphrase', 'password', 'agent', 'knownHosts'],
};

const MiB = 1024 * 1024;
export const MIN_S3_PART_SIZE = 5 * MiB;
const MAX_S3_PART_SIZE = 5 * 1024 * MiB;
export const DRIVE_CHUNK_QUANTUM = 256 * 1024;
const SECRET_KEYS = new Set(['secretAccessKey', 'accessKeyId', 'password', 'passphrase']);

/**
 * Why `name` cannot be an S3 bucket, or undefined. S3's rules (3-63 characters of letters, digits, dots,
 * hyphens, starting and ending with a letter or digit, no `..`), loosened where S3-compatible services and old
 * AWS buckets allow more (upper case, underscores): only names no service accepts are refused.
 */
export function s3BucketNameProblem(name: string): string | undefined {
  if (/^s3:\/\/|^https?:\/\/|\//.test(name)) return 'give the bare bucket name, without s3:// or a path';
  if (name.length < 3 || name.length > 63) return 'a bucket name has 3 to 63 characters';
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    return 'a bucket name has only letters, digits, dots, hyphens and underscores';
  if (!/^[A-Za-z0-9].*[A-Za-z0-9]$/.test(name)) return 'a bucket name starts and ends with a letter or digit';
  if (name.includes('..')) return 'a bucket name has no two dots in a row';
  return undefined;
}

/** Why `value` is not an http(s) URL, or undefined. */
export function httpUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'it does not parse as a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `it is ${url.protocol} rather than http(s)`;
  return undefined;
}

const isWholeNumber = (v: unknown) =>
  (typeof v === 'number' || (typeof v === 'string' && v.trim() !== '')) && Number.isInteger(Number(v));

/**
 * Checks one `destinations:` entry and returns its type. `where` is `destinations[i]`, `source` where the list
 * came from (`config file /etc/litekeep.yml`).
 */
export function validateDestinationEntry(
  entry: Record<string, unknown>,
  where: string,
  source: string,
): DestinationType {
  const from = ` from ${source}`;
  const shown = (key: string, value: unknown) =>
    SECRET_KEYS.has(key)
      ? '(secret)'
      : typeof value === 'string'
        ? `'${redactUrl(value)}'`
        : JSON.stringify(value);
  const invalid = (key: string, expected: string): never => {
    throw new ConfigError(`invalid ${where}.${key} ${shown(key, entry[key])}${from}: ${expected}`);
  };
  const type = entry.type as DestinationType;
  if (!(type in DESTINATION_KEYS)) invalid('type', 'expected local, google-drive, s3, rclone or sftp');
  const allowed = new Set([...COMMON_DESTINATION_KEYS, ...DESTINATION_KEYS[type]]);
  for (const key of Object.keys(entry)) {
    if (!allowed.has(key)) {
      throw new ConfigError(
        `unknown key '${where}.${key}' for a ${type} destination${from}; known: ${[...allowed].join(', ')}`,
      );
    }
  }
  if (entry.name === 'local')
    invalid('name', "'local' is reserved for the backup folder itself; choose another name");
  if (entry.enabled !== undefined && typeof entry.enabled !== 'boolean')
    invalid('enabled', 'expected true or false');
  if (entry.retention !== undefined) {
    if (typeof entry.retention !== 'object' || entry.retention === null || Array.isArray(entry.retention)) {
      invalid('retention', 'expected a map such as {daily: 7, weekly: 4}');
    }
    try {
      parseRetentionPolicy(entry.retention as Record<string, unknown>, `${where}.retention`);
    } catch (error) {
      throw new ConfigError(`${(error as Error).message}${from}`);
    }
  }
  if (entry.format !== undefined && entry.format !== 'full' && entry.format !== 'incremental')
    invalid('format', 'expected full or incremental');
  if (entry.packSize !== undefined) {
    const n = Number(entry.packSize);
    if (!isWholeNumber(entry.packSize) || n < MIN_PACK_SIZE || n > MAX_PACK_SIZE)
      invalid(
        'packSize',
        `expected bytes from ${MIN_PACK_SIZE} (1 MiB) to ${MAX_PACK_SIZE} (256 MiB), e.g. 16777216`,
      );
    if (entry.format !== 'incremental')
      invalid('packSize', 'it applies only to format: incremental; remove it or set format: incremental');
  }
  const text = (key: string, required = false) => {
    const v = entry[key];
    if (v === undefined) {
      if (required) throw new ConfigError(`${where} (${type}) needs '${key}'${from}`);
      return undefined;
    }
    if (typeof v !== 'string' || v.trim() === '') invalid(key, 'expected a non-empty string');
    return v as string;
  };
  switch (type) {
    case 'local':
      if (text('path') === undefined) {
        throw new ConfigError(`${where} (local) needs 'path': the folder to copy backups into${from}`);
      }
      break;
    case 'google-drive': {
      for (const key of ['credentials', 'folder', 'folderId']) text(key);
      for (const key of ['apiUrl', 'tokenUrl', 'authUrl']) {
        const url = text(key);
        const problem = url === undefined ? undefined : httpUrlProblem(url);
        if (problem) invalid(key, `expected an http(s) URL (${problem})`);
      }
      if (entry.trash !== undefined && typeof entry.trash !== 'boolean')
        invalid('trash', 'expected true or false');
      if (entry.chunkSize !== undefined) {
        const n = Number(entry.chunkSize);
        if (!isWholeNumber(entry.chunkSize) || n <= 0 || n % DRIVE_CHUNK_QUANTUM !== 0) {
          invalid('chunkSize', 'expected a positive multiple of 262144 (256 KiB), such as 8388608 (8 MiB)');
        }
      }
      break;
    }
    case 's3': {
      const bucket = text('bucket', true)!;
      const problem = s3BucketNameProblem(bucket);
      if (problem) invalid('bucket', `not an S3 bucket name: ${problem}`);
      for (const key of ['prefix', 'region', 'storageClass', 'serverSideEncryption']) text(key);
      const endpoint = text('endpoint');
      const endpointProblem = endpoint === undefined ? undefined : httpUrlProblem(endpoint);
      if (endpointProblem)
        invalid('endpoint', `expected a URL such as https://s3.example.com (${endpointProblem})`);
      if (entry.forcePathStyle !== undefined && typeof entry.forcePathStyle !== 'boolean') {
        invalid('forcePathStyle', 'expected true or false');
      }
      const keyId = text('accessKeyId');
      const secret = text('secretAccessKey');
      if (Boolean(keyId) !== Boolean(secret)) {
        throw new ConfigError(
          `${where} (s3) sets ${keyId ? 'accessKeyId but not secretAccessKey' : 'secretAccessKey but not accessKeyId'}` +
            `${from}: set both, or neither to use the AWS credential chain (environment, shared files, instance roles)`,
        );
      }
      if (entry.partSize !== undefined) {
        const n = Number(entry.partSize);
        if (!isWholeNumber(entry.partSize) || n < MIN_S3_PART_SIZE || n > MAX_S3_PART_SIZE) {
          invalid('partSize', `expected a whole number of bytes from ${MIN_S3_PART_SIZE} (5 MiB) to 5 GiB`);
        }
      }
      if (
        entry.checksumMode !== undefined &&
        !['when-required', 'when-supported'].includes(String(entry.checksumMode))
      ) {
        invalid('checksumMode', "expected 'when-required' or 'when-supported'");
      }
      if (entry.maxAttempts !== undefined) {
        const n = Number(entry.maxAttempts);
        if (!isWholeNumber(entry.maxAttempts) || n < 1 || n > 20)
          invalid('maxAttempts', 'expected a whole number from 1 to 20');
      }
      break;
    }
    // Their deeper checks (rclone knows the remote, the known_hosts file exists) run where the destination is
    // built, at the start of each run: see src/destinations/rclone.ts and sftp.ts.
    case 'rclone':
      text('remote', true);
      for (const key of ['rclone', 'rcloneConfig']) text(key);
      break;
    case 'sftp':
      text('host', true);
      text('path', true);
      for (const key of ['user', 'keyFile', 'knownHosts']) text(key);
      break;
  }
  return type;
}

/** The whole `destinations:` list: every entry, and names that differ. */
export function validateDestinations(entries: Record<string, unknown>[], source: string): void {
  const names = new Set<string>();
  entries.forEach((entry, index) => {
    validateDestinationEntry(entry, `destinations[${index}]`, source);
    const name = String(entry.name);
    if (names.has(name)) {
      throw new ConfigError(
        `duplicate destination name '${name}' in destinations from ${source}: names must differ`,
      );
    }
    names.add(name);
  });
}
