import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog, CATALOG_DIR, CATALOG_FILE } from '../../src/catalog/index.js';
import { MIGRATIONS } from '../../src/catalog/migrations.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

afterAll(() => removeTempDirs());

const T = (minute: number) => new Date(Date.UTC(2026, 2, 1, 3, minute)).toISOString();

type Event =
  | { upload: string; to: string; at: number; status?: 'ok' | 'failed' }
  | { remove: string; from: string; at: number; status?: 'ok' | 'failed' };

/**
 * A history that exercises every rule of "held": removed after, at the same instant, before a re-upload, a
 * failed removal, another destination's removal, and records written out of time order.
 */
const HISTORY: Event[] = [
  { upload: 'a', to: 'usb', at: 1 },
  { remove: 'a', from: 'usb', at: 5 },
  { upload: 'b', to: 'usb', at: 2 },
  { remove: 'b', from: 'usb', at: 2 },
  { upload: 'c', to: 'usb', at: 3 },
  { remove: 'c', from: 'usb', at: 4 },
  { upload: 'c', to: 'usb', at: 6 },
  { upload: 'd', to: 'usb', at: 3 },
  { remove: 'd', from: 'usb', at: 7, status: 'failed' },
  { remove: 'd', from: 's3', at: 8 },
  { upload: 'e', to: 'usb', at: 4, status: 'failed' },
  // Out of order: the removal is recorded before the (earlier) upload it ends.
  { remove: 'f', from: 'usb', at: 9 },
  { upload: 'f', to: 'usb', at: 8 },
  // Out of order the other way: an older upload recorded after a newer one that is held.
  { upload: 'g', to: 's3', at: 9 },
  { upload: 'g', to: 's3', at: 2 },
  { remove: 'g', from: 's3', at: 5 },
  { upload: 'd', to: 's3', at: 1 },
];

/** Held as the rule says it, computed here from the events themselves. */
function expectedHeld(destination: string): string[] {
  const files = new Set<string>();
  for (const e of HISTORY) if ('upload' in e && e.to === destination) files.add(e.upload);
  return [...files]
    .filter((file) => {
      const ups = HISTORY.filter(
        (e) => 'upload' in e && e.upload === file && e.to === destination && (e.status ?? 'ok') === 'ok',
      );
      if (ups.length === 0) return false;
      const newest = Math.max(...ups.map((e) => e.at));
      return !HISTORY.some(
        (e) =>
          'remove' in e &&
          e.remove === file &&
          e.from === destination &&
          (e.status ?? 'ok') === 'ok' &&
          e.at >= newest,
      );
    })
    .sort();
}

function record(catalog: Catalog, e: Event): void {
  if ('upload' in e) {
    catalog.recordUpload({ backupFile: e.upload, destination: e.to, status: e.status ?? 'ok', at: T(e.at) });
  } else {
    catalog.recordDeletion({
      backupFile: e.remove,
      destination: e.from,
      status: e.status ?? 'ok',
      at: T(e.at),
    });
  }
}

describe('the copies a destination holds (catalog heldOn)', () => {
  it('follows uploads and removals as they are recorded, in any order', () => {
    const catalog = Catalog.open(tempDir('litekeep-held-'));
    try {
      for (const e of HISTORY) record(catalog, e);
      expect(expectedHeld('usb')).toEqual(['c', 'd']);
      expect(expectedHeld('s3')).toEqual(['g']);
      expect(catalog.heldOn('usb')).toEqual(expectedHeld('usb'));
      expect(catalog.heldOn('s3')).toEqual(expectedHeld('s3'));
      expect(catalog.heldOn('drive')).toEqual([]);
    } finally {
      catalog.close();
    }
  });

  it('is filled from the history when an older activity log is opened (migration 4)', () => {
    const dir = tempDir('litekeep-held-');
    fs.mkdirSync(path.join(dir, CATALOG_DIR));
    const file = path.join(dir, CATALOG_DIR, CATALOG_FILE);
    // An activity log as litekeep with three migrations wrote it.
    const old = new Database(file);
    for (let v = 0; v < 3; v++) old.exec(MIGRATIONS[v]);
    old.pragma('user_version = 3');
    for (const e of HISTORY) {
      if ('upload' in e) {
        old
          .prepare(`INSERT INTO uploads (backup_file, destination, status, at) VALUES (?, ?, ?, ?)`)
          .run(e.upload, e.to, e.status ?? 'ok', T(e.at));
      } else {
        old
          .prepare(`INSERT INTO deletions (backup_file, destination, status, at) VALUES (?, ?, ?, ?)`)
          .run(e.remove, e.from, e.status ?? 'ok', T(e.at));
      }
    }
    old.close();

    // Read-only first (status, the page): migrated in memory, the file left at version 3.
    const reader = Catalog.openReadOnly(dir);
    expect(reader.heldOn('usb')).toEqual(expectedHeld('usb'));
    reader.close();
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(3);
    check.close();

    const catalog = Catalog.open(dir);
    try {
      expect(catalog.schemaVersion).toBe(MIGRATIONS.length);
      expect(catalog.heldOn('usb')).toEqual(expectedHeld('usb'));
      expect(catalog.heldOn('s3')).toEqual(expectedHeld('s3'));
      // And kept up to date from there on.
      catalog.recordDeletion({ backupFile: 'c', destination: 'usb', status: 'ok', at: T(10) });
      catalog.recordUpload({ backupFile: 'h', destination: 'usb', status: 'ok', at: T(11) });
      expect(catalog.heldOn('usb')).toEqual(['d', 'h']);
    } finally {
      catalog.close();
    }
  });
});
