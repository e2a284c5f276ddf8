import { hostOf } from '../destinations/factory.js';
import type { DatabaseTarget } from '../config/index.js';
import { readIdentityFile } from '../pipeline/index.js';
import {
  listCandidates,
  verifyBackup,
  verifyPoints,
  type DecryptOptions,
  type VerifyResult,
} from '../restore/index.js';
import { acquireLock } from '../scheduler/lock.js';
import { LitekeepError, oneLine } from '../util/errors.js';
import { runCeiling } from '../util/timeouts.js';
import { BackupManager } from './manager.js';
import { lockPathFor } from './task.js';
import { readPassphraseFile } from './encryption.js';
import { notifyProblem } from './notifications.js';
import { destinationsOf } from './offsite.js';

const DAY = 86_400_000;

async function decryptOptions(target: DatabaseTarget): Promise<DecryptOptions | undefined> {
  const e = target.settings.encryption;
  const options: DecryptOptions = {};
  if (e.identity) {
    // A configured identity that cannot be read would skip every encrypted backup without a word, run after
    // run: say so instead. Keeping the key off the machine means not configuring it here.
    try {
      options.identities = await readIdentityFile(e.identity);
    } catch (error) {
      throw new LitekeepError(
        `encryption.identity: ${oneLine(error)}; encrypted backups cannot be verified until it is fixed ` +
          `(or remove encryption.identity to keep the key off this machine)`,
        { stage: 'verify', cause: error },
      );
    }
  }
  if (e.passphrase) options.passphrase = e.passphrase;
  else if (e.passphraseFile) options.passphrase = await readPassphraseFile(e.passphraseFile);
  return options.identities || options.passphrase ? options : undefined;
}

/**
 * The daemon's proof that backups restore (config `verify`): after every backup, or daily/weekly, the newest
 * backup of each destination plus one older one chosen at random. Encrypted backups are verified only when an
 * identity or passphrase is configured (keeping the identity off the machine is a valid choice). A failed
 * verification sends a failure notification.
 */
export async function verifyDue(
  target: DatabaseTarget,
  mode: 'after-backup' | 'daily' | 'weekly' | 'never',
  _trigger: string,
  now = new Date(),
  signal?: AbortSignal,
): Promise<VerifyResult[]> {
  if (mode === 'never') return [];
  if (mode !== 'after-backup') {
    const manager = new BackupManager(target);
    const last = manager.catalog
      .lastVerifications()
      .map((v) => new Date(v.at!).getTime())
      .sort((a, b) => b - a)[0];
    manager.close();
    if (last !== undefined && now.getTime() - last < (mode === 'daily' ? DAY : 7 * DAY) - 3_600_000)
      return [];
  }
  /** A verification that fails, or never reaches a verdict, is a failure notification: silence hides it. */
  const alert = (error: string, file?: string) =>
    notifyProblem(target, { stage: 'verify', error, file, time: now });
  let decrypt: DecryptOptions | undefined;
  try {
    decrypt = await decryptOptions(target);
  } catch (error) {
    await alert(`verification could not run: ${oneLine(error)}`);
    throw error;
  }
  const sources = ['local', ...destinationsOf(target).map((d) => d.name)];
  const results: VerifyResult[] = [];
  // Under the database's lock: a backup running meanwhile (a manual one) could prune the very file being
  // read and turn a good backup into a false alarm. A held lock fails this verification with the holder named.
  const lock = await acquireLock(lockPathFor(target), { purpose: `verification of ${target.name}` });
  // It holds the lock, so it has the same ceiling as a backup run: a hung download must not block backups.
  const ceiling = runCeiling(`verification of ${target.name}`, target.settings.runTimeout, signal);
  let interrupted: string | undefined;
  try {
    await verifySources(ceiling.signal);
  } catch (error) {
    if (!ceiling.expired) throw error;
    interrupted = oneLine(ceiling.expired);
  } finally {
    ceiling.dispose();
    await lock.release();
  }
  async function verifySources(stop: AbortSignal): Promise<void> {
    for (const source of sources) {
      stop.throwIfAborted();
      // Only this machine's copies: another host's are theirs to verify.
      const candidates = (await listCandidates(target, source, { ownOnly: true })).filter(
        (c) => decrypt || !c.name.endsWith('.age'),
      );
      if (candidates.length === 0) continue;
      const chosen = [candidates[0]];
      if (candidates.length > 1 && mode !== 'after-backup') {
        chosen.push(candidates[1 + Math.floor(Math.random() * (candidates.length - 1))]);
      }
      for (const candidate of chosen) {
        results.push(
          ...(await verifyBackup(target, {
            name: candidate.name,
            from: source,
            host: hostOf(target),
            ...decrypt,
            signal: stop,
          })),
        );
      }
      // The daily and weekly drills also restore a random commit exactly, where WAL segments are shipped.
      if (mode !== 'after-backup')
        results.push(...(await verifyPoints(target, { from: source, count: 1, ...decrypt, signal: stop })));
    }
  }
  if (interrupted) results.push({ backup: 'the rest', source: 'all', status: 'failed', error: interrupted });
  const failed = results.filter((r) => r.status === 'failed');
  const inconclusive = results.filter((r) => r.status === 'error');
  const describe = (list: VerifyResult[]) =>
    list.map((f) => `${f.backup} on ${f.source}: ${f.error}`).join('; ');
  if (failed.length) await alert(`verification failed: ${describe(failed)}`, failed[0].backup);
  else if (inconclusive.length) {
    await alert(`verification could not reach a verdict: ${describe(inconclusive)}`, inconclusive[0].backup);
  }
  return results;
}
