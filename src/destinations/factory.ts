import os from 'node:os';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import { parseRetentionPolicy, type RetentionPolicy } from '../retention/index.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import { REPOSITORY_KEYS, validateRepositorySettings } from '../repository/settings.js';
import { GoogleDriveDestination } from './google-drive.js';
import { LocalDestination } from './local.js';
import { S3Destination } from './s3.js';
import type { Destination } from './types.js';

export type DestinationType = 'local' | 'google-drive' | 's3';

export interface DestinationSpec {
  name: string;
  type: DestinationType;
  /** Retention on this destination; undefined means "the local policy". */
  retention?: RetentionPolicy;
  settings: Record<string, unknown>;
}

const COMMON_KEYS = ['name', 'type', 'retention', 'enabled', ...REPOSITORY_KEYS];
const KEYS_BY_TYPE: Record<DestinationType, string[]> = {
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
};

/** The seed's default location of the Drive credentials, relative to the working folder. */
export const DEFAULT_GOOGLE_CREDENTIALS = 'google_user_credentials.json';

function specFromEntry(entry: Record<string, unknown>, index: number): DestinationSpec {
  const where = `destinations[${index}]`;
  const type = entry.type as DestinationType;
  if (!(type in KEYS_BY_TYPE)) {
    throw new ConfigError(
      `invalid ${where}.type '${String(entry.type)}': expected local, google-drive or s3`,
    );
  }
  const allowed = new Set([...COMMON_KEYS, ...KEYS_BY_TYPE[type]]);
  for (const key of Object.keys(entry)) {
    if (!allowed.has(key)) {
      throw new ConfigError(
        `unknown key '${where}.${key}' for a ${type} destination; known: ${[...allowed].join(', ')}`,
      );
    }
  }
  if (type === 'local' && typeof entry.path !== 'string') {
    throw new ConfigError(`${where} (local) needs 'path': the folder to copy backups into`);
  }
  if (type === 's3' && typeof entry.bucket !== 'string') {
    throw new ConfigError(`${where} (s3) needs 'bucket'`);
  }
  // format: full | incremental, packSize (issue 14: incremental repositories).
  validateRepositorySettings(entry, where);
  let retention: RetentionPolicy | undefined;
  if (entry.retention !== undefined) {
    if (typeof entry.retention !== 'object' || entry.retention === null) {
      throw new ConfigError(`invalid ${where}.retention: expected a map such as {daily: 7, weekly: 4}`);
    }
    try {
      retention = parseRetentionPolicy(entry.retention as Record<string, unknown>, `${where}.retention`);
    } catch (error) {
      throw new ConfigError((error as Error).message);
    }
  }
  const name = String(entry.name);
  if (name === 'local')
    throw new ConfigError(`${where}.name 'local' is reserved for the backup folder itself`);
  return { name, type, retention, settings: entry };
}

/**
 * The off-site destinations of a database: the `destinations:` list, plus Google Drive when the `drive`
 * section or GOOGLE_APPLICATION_CREDENTIALS configures it (the seed's behaviour) and no google-drive
 * destination is listed.
 */
export function destinationSpecs(target: DatabaseTarget, driveConfigured: boolean): DestinationSpec[] {
  const settings = target.settings;
  const specs = (settings.destinations ?? []).map(specFromEntry);
  const names = new Set<string>();
  for (const spec of specs) {
    if (names.has(spec.name)) throw new ConfigError(`duplicate destination name '${spec.name}'`);
    names.add(spec.name);
  }
  if (driveConfigured && settings.drive.enabled && !specs.some((s) => s.type === 'google-drive')) {
    const drivePolicy = Object.fromEntries(
      Object.entries(settings.drive.retention).filter(([, v]) => v !== undefined),
    );
    specs.push({
      name: 'drive',
      type: 'google-drive',
      retention: Object.keys(drivePolicy).length
        ? parseRetentionPolicy(drivePolicy, 'drive.retention')
        : undefined,
      settings: {
        credentials: settings.drive.credentials,
        folder: settings.drive.folder,
        folderId: settings.drive.folderId,
        trash: settings.drive.trash,
        chunkSize: settings.drive.chunkSize,
        apiUrl: settings.drive.apiUrl,
        tokenUrl: settings.drive.tokenUrl,
        authUrl: settings.drive.authUrl,
      },
    });
  }
  return specs.filter((s) => s.settings.enabled !== false);
}

const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown) =>
  typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : undefined;
const bool = (v: unknown) =>
  typeof v === 'boolean' ? v : v === 'true' ? true : v === 'false' ? false : undefined;

export function createDestination(
  spec: DestinationSpec,
  target: DatabaseTarget,
  cwd = process.cwd(),
): Destination {
  const s = spec.settings;
  switch (spec.type) {
    case 'local':
      return new LocalDestination(spec.name, path.resolve(cwd, String(s.path), target.name), {
        host: hostOf(target),
      });
    case 'google-drive': {
      const credentialsPath = path.resolve(cwd, str(s.credentials) ?? DEFAULT_GOOGLE_CREDENTIALS);
      return new GoogleDriveDestination({
        name: spec.name,
        credentialsPath,
        folderName: str(s.folder) ?? 'litekeep-backups',
        folderId: str(s.folderId),
        sourceName: target.name,
        host: hostOf(target),
        trash: bool(s.trash) ?? true,
        chunkSize: num(s.chunkSize),
        endpoints: { apiRootUrl: str(s.apiUrl), tokenUrl: str(s.tokenUrl), authUrl: str(s.authUrl) },
      });
    }
    case 's3':
      // The SDK warns on stderr on every run under Node < 22 about its own future releases; litekeep pins a
      // release that supports Node 20, so the warning only buries litekeep's own messages (and breaks cron mail).
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      return new S3Destination({
        name: spec.name,
        bucket: String(s.bucket),
        prefix: str(s.prefix),
        databaseName: target.name,
        host: hostOf(target),
        region: str(s.region),
        endpoint: str(s.endpoint),
        forcePathStyle: bool(s.forcePathStyle),
        storageClass: str(s.storageClass),
        serverSideEncryption: str(s.serverSideEncryption),
        accessKeyId: str(s.accessKeyId),
        secretAccessKey: str(s.secretAccessKey),
        partSize: num(s.partSize),
        checksumMode: str(s.checksumMode) as 'when-required' | 'when-supported' | undefined,
        maxAttempts: num(s.maxAttempts),
      });
  }
}

/** This machine's name in remote copies: the `host` setting, else the system host name. */
export function hostOf(target: DatabaseTarget): string {
  return target.settings.host ?? os.hostname();
}

/** A destination by name (`local` is the backup folder itself), for restore, verify and list --from. */
export async function openDestination(target: DatabaseTarget, name: string): Promise<Destination> {
  if (name === 'local') return new LocalDestination('local', target.backupDir);
  const specs = destinationSpecs(target, true);
  const spec =
    specs.find((s) => s.name === name) ??
    (name === 'drive' ? specs.find((s) => s.type === 'google-drive') : undefined);
  if (!spec) {
    const known = ['local', ...destinationSpecs(target, target.driveConfigured).map((s) => s.name)];
    throw new LitekeepError(`no destination named '${name}'; configured: ${[...new Set(known)].join(', ')}`, {
      exitCode: EXIT.usage,
    });
  }
  return createDestination(spec, target);
}
