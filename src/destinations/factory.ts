import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import type { DatabaseTarget } from '../config/index.js';
import { ConfigError, isValidHostName } from '../config/index.js';
import { validateDestinations, type DestinationType } from '../config/destinations.js';
import { parseRetentionPolicy, type RetentionPolicy } from '../retention/index.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import { GoogleDriveDestination } from './google-drive.js';
import { LocalDestination } from './local.js';
import { checkRcloneSettings, RcloneDestination } from './rclone.js';
import { S3Destination } from './s3.js';
import { checkSftpSettings, SftpDestination } from './sftp.js';
import type { Destination } from './types.js';

export type { DestinationType };

export interface DestinationSpec {
  name: string;
  type: DestinationType;
  /** Retention on this destination; undefined means "the local policy". */
  retention?: RetentionPolicy;
  settings: Record<string, unknown>;
}

/** The seed's default location of the Drive credentials, relative to the working folder. */
export const DEFAULT_GOOGLE_CREDENTIALS = 'google_user_credentials.json';

function specFromEntry(entry: Record<string, unknown>, index: number): DestinationSpec {
  const where = `destinations[${index}]`;
  const retention =
    entry.retention === undefined
      ? undefined
      : parseRetentionPolicy(entry.retention as Record<string, unknown>, `${where}.retention`);
  return { name: String(entry.name), type: entry.type as DestinationType, retention, settings: entry };
}

/**
 * The off-site destinations of a database: the `destinations:` list, plus Google Drive when the `drive`
 * section or GOOGLE_APPLICATION_CREDENTIALS configures it (the seed's behaviour) and no google-drive
 * destination is listed.
 */
export function destinationSpecs(target: DatabaseTarget, driveConfigured: boolean): DestinationSpec[] {
  const settings = target.settings;
  // Checked when the configuration loaded, naming its source; again here for targets built by hand.
  validateDestinations(settings.destinations ?? [], 'configuration');
  const specs = (settings.destinations ?? []).map(specFromEntry);
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
  const enabled = specs.filter((s) => s.settings.enabled !== false);
  // What only the machine can tell (rclone knows the remote, a known_hosts file is there): exit 2 at start.
  for (const spec of enabled) {
    const where = `destination '${spec.name}'`;
    if (spec.type === 'rclone') checkRcloneSettings(spec.settings, where);
    if (spec.type === 'sftp') checkSftpSettings(spec.settings, where);
  }
  return enabled;
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
  /** The run's signal: every request of the destination stops with it. */
  signal?: AbortSignal,
): Destination {
  const s = spec.settings;
  switch (spec.type) {
    case 'local': {
      const folder = path.resolve(cwd, String(s.path), target.name);
      // A copy into the backup folder itself would be pruned by two policies, and the folder's own backups
      // would look like another host's copies.
      const inside = (a: string, b: string) => {
        const relative = path.relative(a, b);
        return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
      };
      if (inside(folder, target.backupDir) || inside(target.backupDir, folder)) {
        throw new ConfigError(
          `destination '${spec.name}' (${folder}) overlaps the backup folder ${target.backupDir}; point its path at another disk or folder`,
        );
      }
      return new LocalDestination(spec.name, folder, { host: hostOf(target) });
    }
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
        idleTimeoutMs: target.settings.idleTimeout,
        signal,
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
        idleTimeoutMs: target.settings.idleTimeout,
        signal,
      });
    case 'rclone':
      return new RcloneDestination({
        name: spec.name,
        remote: String(s.remote),
        databaseName: target.name,
        host: hostOf(target),
        binary: str(s.rclone),
        configPath: str(s.rcloneConfig),
        flags: s.flags as string[] | undefined,
      });
    case 'sftp':
      return new SftpDestination({
        name: spec.name,
        host: String(s.host),
        port: num(s.port),
        user: str(s.user),
        path: String(s.path),
        databaseName: target.name,
        machine: hostOf(target),
        keyFile: str(s.keyFile),
        passphrase: str(s.passphrase),
        password: str(s.password),
        agent:
          typeof s.agent === 'string' && s.agent !== 'true' && s.agent !== 'false' ? s.agent : bool(s.agent),
        knownHosts: str(s.knownHosts),
      });
  }
}

/** Where a backup folder records the host name it first backed up as. */
export function hostRecordPath(target: DatabaseTarget): string {
  return path.join(target.backupDir, '.litekeep', 'host');
}

/**
 * This machine's name in remote copies: the `host` setting; else the name this backup folder recorded at its
 * first backup (so a container recreated with a new host name, or a machine restored from this folder, goes on
 * as the same host); else the system host name.
 */
export function hostOf(target: DatabaseTarget): string {
  if (target.settings.host) return target.settings.host;
  try {
    const recorded = fs.readFileSync(hostRecordPath(target), 'utf8').trim();
    if (isValidHostName(recorded)) return recorded;
  } catch {
    // not recorded yet
  }
  return os.hostname();
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
