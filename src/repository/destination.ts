import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { readPassphraseFile } from '../backup/encryption.js';
import { CATALOG_DIR } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import {
  createDestination,
  destinationSpecs,
  hostOf,
  type DestinationSpec,
} from '../destinations/factory.js';
import { hostFromSegment, hostSegment } from '../naming.js';
import { readIdentityFile } from '../pipeline/index.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import type { RepositoryDecryptOptions } from './crypto.js';
import { formatOf } from './settings.js';
import type { BlobStore } from './store.js';

export function isIncremental(spec: Pick<DestinationSpec, 'settings'>): boolean {
  return formatOf(spec.settings) === 'incremental';
}

/** The configured destination named `name` (`drive` also finds the google-drive one), if any. */
export function specNamed(target: DatabaseTarget, name: string): DestinationSpec | undefined {
  if (name === 'local') return undefined;
  const specs = destinationSpecs(target, true);
  return (
    specs.find((s) => s.name === name) ??
    (name === 'drive' ? specs.find((s) => s.type === 'google-drive') : undefined)
  );
}

/** The incremental destination named `name`, or undefined when it is a full one (or not configured). */
export function incrementalSpec(
  target: DatabaseTarget,
  name: string | undefined,
): DestinationSpec | undefined {
  if (name === undefined) return undefined;
  const spec = specNamed(target, name);
  return spec && isIncremental(spec) ? spec : undefined;
}

/** `<backupDir>/.litekeep`: the id key and the local indexes of this database's repositories. */
export function stateDirOf(target: DatabaseTarget): string {
  return path.join(target.backupDir, CATALOG_DIR);
}

/**
 * The blob store of `host`'s repository on a destination, through the destination's own client: a local folder
 * `<path>/<database>/<host>/repo/` (the same below an SFTP server's `path` or an rclone remote), S3 keys
 * `<prefix>/<database>/<host>/repo/…`, or on Drive the folder `repo` inside `<database>@<host>` inside the
 * destination's folder.
 */
export async function openRepositoryStore(
  spec: DestinationSpec,
  target: DatabaseTarget,
  host = hostOf(target),
): Promise<BlobStore> {
  // Each store and its client library load only when a repository on that kind of destination is opened.
  const destination = await createDestination(spec, target);
  if (spec.type === 'local') {
    const [{ LocalDestination }, { LocalBlobStore }] = await Promise.all([
      import('../destinations/local.js'),
      import('./stores/local.js'),
    ]);
    if (destination instanceof LocalDestination)
      return new LocalBlobStore(path.join(destination.folder, hostSegment(host), 'repo'));
  }
  if (spec.type === 's3') {
    const [{ S3Destination }, { S3BlobStore }] = await Promise.all([
      import('../destinations/s3.js'),
      import('./stores/s3.js'),
    ]);
    if (destination instanceof S3Destination) return new S3BlobStore(destination, host);
  }
  if (spec.type === 'google-drive') {
    const [{ GoogleDriveDestination }, { DriveBlobStore }] = await Promise.all([
      import('../destinations/google-drive.js'),
      import('./stores/drive.js'),
    ]);
    if (destination instanceof GoogleDriveDestination)
      return new DriveBlobStore(destination, target.name, host);
  }
  if (spec.type === 'sftp' || spec.type === 'rclone') {
    const [{ HostFolderDestination }, { FolderBlobStore }] = await Promise.all([
      import('../destinations/host-folders.js'),
      import('./stores/folder.js'),
    ]);
    if (destination instanceof HostFolderDestination) return new FolderBlobStore(destination, host);
  }
  throw new LitekeepError(`destination ${spec.name} (${spec.type}) cannot hold an incremental repository`, {
    exitCode: EXIT.usage,
  });
}

/** The hosts with a repository of this database on the destination. */
export async function repositoryHosts(spec: DestinationSpec, target: DatabaseTarget): Promise<string[]> {
  const destination = await createDestination(spec, target);
  if (spec.type === 's3') {
    const [{ S3Destination }, { S3BlobStore }] = await Promise.all([
      import('../destinations/s3.js'),
      import('./stores/s3.js'),
    ]);
    if (destination instanceof S3Destination) {
      try {
        return await S3BlobStore.hosts(destination);
      } finally {
        destination.destroy();
      }
    }
  }
  if (spec.type === 'google-drive') {
    const [{ GoogleDriveDestination }, { DriveBlobStore }] = await Promise.all([
      import('../destinations/google-drive.js'),
      import('./stores/drive.js'),
    ]);
    if (destination instanceof GoogleDriveDestination) return DriveBlobStore.hosts(destination, target.name);
  }
  if (spec.type === 'sftp' || spec.type === 'rclone') {
    const [{ HostFolderDestination }, { FolderBlobStore }] = await Promise.all([
      import('../destinations/host-folders.js'),
      import('./stores/folder.js'),
    ]);
    if (destination instanceof HostFolderDestination) return FolderBlobStore.hosts(destination);
  }
  const { LocalDestination } = await import('../destinations/local.js');
  if (destination instanceof LocalDestination) {
    const entries = await fsp.readdir(destination.folder, { withFileTypes: true }).catch(() => []);
    return entries
      .filter(
        (e) => e.isDirectory() && fs.existsSync(path.join(destination.folder, e.name, 'repo', 'config')),
      )
      .map((e) => hostFromSegment(e.name))
      .sort();
  }
  return [];
}

/**
 * Whose repository a reader opens: the host asked for, else this host's, else the only one there (a new
 * machine restoring another's backups). Several hosts and none of them this one: ask.
 */
export async function chooseRepositoryHost(
  spec: DestinationSpec,
  target: DatabaseTarget,
  wanted: string | undefined,
): Promise<string> {
  const own = hostOf(target);
  const hosts = await repositoryHosts(spec, target);
  if (wanted !== undefined) {
    if (!hosts.includes(wanted))
      throw new LitekeepError(
        `${spec.name} holds no repository of ${target.name} from host '${wanted}'; hosts there: ${hosts.join(', ') || 'none'}`,
        { exitCode: EXIT.usage, stage: 'restore' },
      );
    return wanted;
  }
  if (hosts.includes(own) || hosts.length === 0) return own;
  if (hosts.length === 1) return hosts[0];
  throw new LitekeepError(
    `${spec.name} holds repositories of ${target.name} from several hosts (${hosts.join(', ')}); choose one with --host NAME`,
    { exitCode: EXIT.usage, stage: 'restore' },
  );
}

/**
 * What the machine may decrypt with, from the database's settings: the identity (to recover the id key after
 * the machine was lost, or to repack encrypted packs) and the passphrase. Neither is needed to back up.
 */
export async function configuredDecrypt(
  target: DatabaseTarget,
): Promise<RepositoryDecryptOptions | undefined> {
  const e = target.settings.encryption;
  const options: RepositoryDecryptOptions = {};
  if (e.identity && fs.existsSync(e.identity)) options.identities = await readIdentityFile(e.identity);
  if (e.passphrase) options.passphrase = e.passphrase;
  else if (e.passphraseFile) options.passphrase = await readPassphraseFile(e.passphraseFile);
  return options.identities || options.passphrase !== undefined ? options : undefined;
}
