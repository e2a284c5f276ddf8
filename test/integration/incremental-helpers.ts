import fs from 'node:fs';
import path from 'node:path';
import { ListObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_SOURCE, cleanEnv, runCli, TSX_LOADER, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/db.js';
import { FOLDER_MIME, writeAuthorizedUser, type DriveServer } from '../servers/drive-server.js';
import type { S3TestServer } from '../servers/s3-server.js';
import { makeAppDatabase, treeOf } from '../repository/helpers.js';

/** JSON read back from the CLI; the expectations check its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface Machine {
  dir: string;
  db: string;
  backups: string;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
  /** `backup --json`: the parsed result (exit code in `code`). */
  backup(args?: string[]): Promise<Json>;
}

export const made: string[] = [];

/** A machine with its database and a litekeep.yml whose destinations are `destinations(dir)`. */
export async function machine(
  destinations: (dir: string) => object[],
  options: {
    host?: string;
    rows?: number;
    blobEvery?: number;
    config?: object;
    drive?: DriveServer;
    dir?: string;
    db?: boolean;
  } = {},
): Promise<Machine> {
  const dir = options.dir ?? tempDir('litekeep-incr-');
  if (!options.dir) made.push(dir);
  const db = path.join(dir, 'app.db');
  if (options.db !== false && !fs.existsSync(db))
    makeAppDatabase(db, options.rows ?? 3000, options.blobEvery);
  if (options.drive) await writeAuthorizedUser(options.drive, dir);
  const config = {
    database: 'app.db',
    backupDir: 'backups',
    timeZone: 'UTC',
    host: options.host ?? 'web1',
    retention: { last: 20 },
    notify: {},
    destinations: destinations(dir),
    ...options.config,
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runCli(args, { cwd: dir, env: { TZ: 'UTC', ...env }, timeoutMs: 120_000 });
  return {
    dir,
    db,
    backups: path.join(dir, 'backups'),
    cli,
    async backup(args: string[] = []) {
      const r = await cli(['backup', '--json', '--trigger', 'scheduled', ...args]);
      let out: Json;
      try {
        out = JSON.parse(r.stdout);
      } catch {
        throw new Error(`backup printed no JSON (exit ${r.code}): ${r.stderr}`);
      }
      return { ...out, code: r.code, stderr: r.stderr };
    },
  };
}

/** The CLI in its own process, for tests that kill it at a chosen moment. */
export function spawnCli(
  m: Machine,
  args: string[],
): { child: ChildProcess; done: Promise<number | null>; until<T>(event: Promise<T>): Promise<T> } {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_SOURCE, ...args], {
    cwd: m.dir,
    env: { ...cleanEnv(), TZ: 'UTC' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    done,
    // The event the test waits for, or the reason it will never come: the command ended first.
    until: <T>(event: Promise<T>) =>
      Promise.race([
        event,
        done.then((code) => {
          throw new Error(`litekeep ${args.join(' ')} exited ${code} first: ${stderr}`);
        }),
      ]),
  };
}

export function s3Destination(s3: S3TestServer, prefix: string, extra: object = {}): object {
  return {
    name: 'bucket',
    type: 's3',
    bucket: s3.bucket,
    prefix,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
    checksumMode: 'when-required',
    maxAttempts: 1,
    format: 'incremental',
    ...extra,
  };
}

export function localDestination(folder: string, extra: object = {}): object {
  return { name: 'usb', type: 'local', path: folder, format: 'incremental', ...extra };
}

export function driveDestination(drive: DriveServer, folder: string, extra: object = {}): object {
  return {
    name: 'gdrive',
    type: 'google-drive',
    credentials: 'google-credentials.json',
    folder,
    apiUrl: drive.url,
    tokenUrl: drive.tokenUrl,
    format: 'incremental',
    ...extra,
  };
}

export function rawS3(s3: S3TestServer): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Keys under a prefix of the bucket, as the server holds them (an independent client). */
export async function s3Keys(raw: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let marker: string | undefined;
  for (;;) {
    const page = await raw.send(new ListObjectsCommand({ Bucket: bucket, Prefix: prefix, Marker: marker }));
    for (const o of page.Contents ?? []) out.push(o.Key!.slice(prefix.length));
    if (!page.IsTruncated || !page.Contents?.length) break;
    marker = page.Contents.at(-1)!.Key;
  }
  return out.sort();
}

/** The files in a Drive repository folder (`<db>@<host>/repo` inside `folder`), by name. */
export function driveRepoFiles(drive: DriveServer, folder: string, host = 'web1'): string[] {
  const files = [...drive.files.values()];
  const named = (name: string, parent?: string) =>
    files.find(
      (f) =>
        f.mimeType === FOLDER_MIME &&
        f.name === name &&
        !f.trashed &&
        (!parent || f.parents.includes(parent)),
    );
  const root = named(folder);
  const hostFolder = root && named(`app@${host}`, root.id);
  const repo = hostFolder && named('repo', hostFolder.id);
  if (!repo) return [];
  return files
    .filter((f) => f.parents.includes(repo.id) && !f.trashed)
    .map((f) => f.name)
    .sort();
}

export function localRepoFiles(folder: string, host = 'web1'): string[] {
  return treeOf(path.join(folder, 'app', host, 'repo'));
}

export function rowsOf(file: string): { messages: number; users: number; sum: number } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      messages: db.prepare('SELECT COUNT(*) FROM messages').pluck().get() as number,
      users: db.prepare('SELECT COUNT(*) FROM users').pluck().get() as number,
      sum: db.prepare('SELECT TOTAL(length(body)) FROM messages').pluck().get() as number,
    };
  } finally {
    db.close();
  }
}
