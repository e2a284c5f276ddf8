import fs from 'node:fs';
import path from 'node:path';
import { runBackupForTarget } from '../../src/backup/task.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig, type DatabaseTarget } from '../../src/config/index.js';
import { makeDatabase } from '../helpers/db.js';
import { tempDir } from '../helpers/temp.js';

/** Secrets configured in the workspace: none of them may appear on the page or in the JSON. */
export const SECRETS = {
  token: 'tok-0123456789abcdef-page-token',
  s3Secret: 'S3SECRETwJalrXUtnFEMIbPxRfiCYzz',
  ntfyTopic: 'topic-secret-5f1e2d3c4b5a',
  webhookPath: 'hook-secret-9a8b7c6d5e4f',
};

/** A port nothing listens on: the bucket's every upload fails with ECONNREFUSED. */
const CLOSED = 'http://127.0.0.1:1';

export interface StatusWorkspace {
  dir: string;
  targets: DatabaseTarget[];
  target(name: string): DatabaseTarget;
  /** A real backup run of one database, as the daemon makes it. */
  backup(name: string, trigger?: 'schedule' | 'manual'): Promise<void>;
  catalog(name: string): Catalog;
}

/**
 * Two databases (app, notes) with a local destination that works and an S3 bucket that cannot be reached, and
 * secrets in every place a config holds them (notifications are configured but never sent).
 */
export function statusWorkspace(extra: Record<string, unknown> = {}): StatusWorkspace {
  const dir = tempDir('litekeep-web-');
  makeDatabase(path.join(dir, 'app.db'), 60);
  makeDatabase(path.join(dir, 'notes.db'), 20);
  const config = {
    databases: [
      { name: 'app', path: 'app.db' },
      { name: 'notes', path: 'notes.db' },
    ],
    backupDir: 'backups',
    timeZone: 'Europe/Berlin',
    host: 'web1',
    retention: { last: 3 },
    verify: 'never',
    destinations: [
      { name: 'usb', type: 'local', path: 'usb' },
      {
        name: 'bucket',
        type: 's3',
        bucket: 'my-bucket',
        endpoint: CLOSED,
        region: 'us-east-1',
        accessKeyId: 'AKIAEXAMPLEKEY',
        secretAccessKey: SECRETS.s3Secret,
        maxAttempts: 1,
      },
    ],
    notify: {
      ntfy: { topic: SECRETS.ntfyTopic, on: 'never' },
      webhook: { url: `https://hooks.example.com/${SECRETS.webhookPath}`, on: 'never' },
    },
    ...extra,
  };
  fs.writeFileSync(path.join(dir, 'litekeep.yml'), JSON.stringify(config, null, 2));
  const targets = loadConfig({ cwd: dir, env: {} }).databases;
  const target = (name: string) => targets.find((t) => t.name === name)!;
  return {
    dir,
    targets,
    target,
    async backup(name, trigger = 'schedule') {
      await runBackupForTarget(target(name), { trigger, notify: false });
    },
    catalog: (name) => Catalog.open(target(name).backupDir),
  };
}
