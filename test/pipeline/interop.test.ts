import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateIdentity,
  readIdentityFile,
  restoreArtifactToFile,
  writeArtifact,
} from '../../src/pipeline/index.js';
import { needPrograms } from '../helpers/programs.js';
import {
  AGE_PTY,
  ageKeyPair,
  ageKeygen,
  makeDatabase,
  sh,
  sha256sum,
  tempDir,
  type AgeKeyPair,
} from './helpers.js';

// Every backup must restore with stock tools alone, and files made by them must restore with litekeep. Each
// test needs the programs it drives; where they are not installed it skips and says so in the run's summary.
let dir: string;
let db: string;
let dbSha: string;
let cli: AgeKeyPair;

beforeAll(async () => {
  dir = tempDir();
  db = path.join(dir, 'source.db');
  makeDatabase(db, 2);
  dbSha = sha256sum(db);
  // The same format as age-keygen's (the test of generateIdentity below checks that with age-keygen itself).
  cli = await ageKeyPair(dir, 'cli-key.txt');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('litekeep → age/zstd/gzip CLIs', () => {
  it('age -d -i key | zstd -d restores a .db.zst.age', async (ctx) => {
    needPrograms(ctx, 'age', 'zstd');
    const out = path.join(dir, 'backup.db.zst.age');
    const result = await writeArtifact(db, out, { compression: 'zstd', recipients: [cli.recipient] });
    expect(sh(`sha256sum "${out}"`).split(' ')[0]).toBe(result.sha256);
    sh(`age -d -i "${cli.file}" "${out}" | zstd -d -q > "${dir}/cli-restored.db"`);
    expect(sha256sum(`${dir}/cli-restored.db`)).toBe(dbSha);
  });

  it('age -d | gunzip restores a .db.gz.age; zstd -t checks the frame checksum', async (ctx) => {
    needPrograms(ctx, 'age', 'zstd');
    const out = path.join(dir, 'backup.db.gz.age');
    await writeArtifact(db, out, { compression: 'gzip', recipients: [cli.recipient] });
    expect(sh(`age -d -i "${cli.file}" "${out}" | gzip -dc | sha256sum`).split(' ')[0]).toBe(dbSha);

    const zst = path.join(dir, 'backup.db.zst');
    await writeArtifact(db, zst, { compression: 'zstd', level: 7 });
    // -lv shows "Check: XXH64" only when the frame carries a checksum.
    expect(sh(`zstd -lv "${zst}"`)).toMatch(/Check:\s+XXH64/);
    expect(sh(`zstd -dc "${zst}" | sha256sum`).split(' ')[0]).toBe(dbSha);
  });

  it('the age CLI decrypts a passphrase file (typed on a pty)', async (ctx) => {
    needPrograms(ctx, 'age', 'python3');
    const out = path.join(dir, 'pw.db.age');
    await writeArtifact(db, out, { compression: 'none', passphrase: 'tr0ub4dor & 3' });
    sh(`python3 "${AGE_PTY}" -d -o "${dir}/pw-cli.db" "${out}"`, { AGE_PW: 'tr0ub4dor & 3' });
    expect(sha256sum(`${dir}/pw-cli.db`)).toBe(dbSha);
  });

  it('a key from generateIdentity works with age -d -i and age-keygen -y', async (ctx) => {
    needPrograms(ctx, 'age', 'age-keygen', 'zstd');
    const keyFile = path.join(dir, 'litekeep-key.txt');
    const { recipient } = await generateIdentity(keyFile);
    expect(execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim()).toBe(recipient);
    const out = path.join(dir, 'ours.db.zst.age');
    await writeArtifact(db, out, { compression: 'zstd', recipients: [recipient] });
    expect(sh(`age -d -i "${keyFile}" "${out}" | zstd -dc | sha256sum`).split(' ')[0]).toBe(dbSha);
  });
});

describe('age/zstd/gzip CLIs → litekeep', () => {
  it('reads zstd -3 | age -r', async (ctx) => {
    needPrograms(ctx, 'age', 'zstd');
    const file = path.join(dir, 'cli.db.zst.age');
    sh(`zstd -3 -q -c "${db}" | age -r ${cli.recipient} -o "${file}"`);
    const identities = await readIdentityFile(cli.file);
    const restored = await restoreArtifactToFile(file, path.join(dir, 'from-cli-zst.db'), {
      compression: 'zstd',
      encrypted: true,
      identities,
    });
    expect(restored.sha256).toBe(dbSha);
  });

  it('reads gzip -6 | age -r, and plain gzip / zstd files (multi-threaded zstd too)', async (ctx) => {
    needPrograms(ctx, 'age', 'zstd');
    const gzAge = path.join(dir, 'cli.db.gz.age');
    sh(`gzip -6 -c "${db}" | age -r ${cli.recipient} > "${gzAge}"`);
    const restored = await restoreArtifactToFile(gzAge, path.join(dir, 'from-cli-gz.db'), {
      compression: 'gzip',
      encrypted: true,
      identities: await readIdentityFile(cli.file),
    });
    expect(restored.sha256).toBe(dbSha);

    sh(`gzip -c "${db}" > "${dir}/cli.db.gz"; zstd -T2 -19 -q -c "${db}" > "${dir}/cli.db.zst"`);
    for (const [file, compression] of [
      ['cli.db.gz', 'gzip'],
      ['cli.db.zst', 'zstd'],
    ] as const) {
      const r = await restoreArtifactToFile(path.join(dir, file), path.join(dir, `${file}.db`), {
        compression,
        encrypted: false,
      });
      expect(r.sha256).toBe(dbSha);
    }
  });

  it('reads a file the age CLI encrypted with a passphrase', async (ctx) => {
    needPrograms(ctx, 'age', 'python3');
    const file = path.join(dir, 'cli-pw.db.age');
    sh(`python3 "${AGE_PTY}" -p -o "${file}" "${db}"`, { AGE_PW: 'hunter2 hunter2' });
    const restored = await restoreArtifactToFile(file, path.join(dir, 'from-cli-pw.db'), {
      compression: 'none',
      encrypted: true,
      passphrase: 'hunter2 hunter2',
    });
    expect(restored.sha256).toBe(dbSha);
  });

  it('reads an age file with several recipients when our key is not the first', async (ctx) => {
    needPrograms(ctx, 'age', 'age-keygen');
    const other = ageKeygen(dir, 'other.txt');
    const file = path.join(dir, 'multi.db.age');
    sh(`age -r ${other.recipient} -r ${cli.recipient} -o "${file}" "${db}"`);
    const restored = await restoreArtifactToFile(file, path.join(dir, 'multi.db'), {
      compression: 'none',
      encrypted: true,
      identities: [cli.identity],
    });
    expect(restored.sha256).toBe(dbSha);
  });
});
