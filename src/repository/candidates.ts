import type { DatabaseTarget } from '../config/index.js';
import { hostOf } from '../destinations/factory.js';
import type { Candidate } from '../restore/restore.js';
import { EXIT, LitekeepError } from '../util/errors.js';
import { canDecrypt } from './crypto.js';
import { chooseRepositoryHost, incrementalSpec, openRepositoryStore, stateDirOf } from './destination.js';
import { RepositoryDamagedError } from './errors.js';
import { shortId } from './ids.js';
import { restoreImage } from './reader.js';
import { removeDeadReadDirs, Repository } from './repository.js';
import { listSnapshots } from './snapshots.js';

/**
 * The snapshots of an incremental destination as restore and verify candidates, newest first. Names are
 * snapshot ids (a unique prefix will do). A manifest that cannot be read is still a candidate — one whose
 * fetch fails with the reason — so that `verify all` reports it.
 */
export async function snapshotCandidates(
  target: DatabaseTarget,
  from: string,
  options: { host?: string } = {},
): Promise<Candidate[]> {
  const spec = incrementalSpec(target, from);
  if (!spec) throw new Error(`${from} is not an incremental destination`);
  await removeDeadReadDirs();
  const host = await chooseRepositoryHost(spec, target, options.host);
  const own = host === hostOf(target);
  const store = await openRepositoryStore(spec, target, host);
  let repo: Repository | undefined;
  try {
    repo = await Repository.openForRead(store, { stateDir: own ? stateDirOf(target) : undefined });
    const listing = await listSnapshots(repo);
    const fetchImage =
      (id: string): Candidate['fetchImage'] =>
      async (plainPath, decrypt, signal) => {
        const reading = await openRepositoryStore(spec, target, host);
        const reader = await Repository.openForRead(reading, {
          stateDir: own ? stateDirOf(target) : undefined,
          decrypt,
        });
        try {
          if (reader.encrypted && !canDecrypt(decrypt))
            throw new LitekeepError(
              `snapshot ${shortId(id)} is encrypted; pass --identity FILE (or LITEKEEP_AGE_IDENTITY) or set LITEKEEP_PASSPHRASE`,
              { exitCode: EXIT.usage, stage: 'restore' },
            );
          const body = await reader.readManifest(id);
          const facts = await reader.factsOf(body);
          const restored = await restoreImage(reader, body, plainPath, { signal });
          if (restored.sha256 !== facts.imageSha256)
            throw new RepositoryDamagedError(
              `snapshot ${shortId(id)} from ${from} restores to other bytes than were backed up (sha256 differs); restore another snapshot and run litekeep check`,
            );
          return {
            sha256: id,
            plainSha256: restored.sha256,
            expectedPlainSha256: facts.imageSha256,
            fingerprint: facts.fingerprint,
            journalMode: facts.journalMode,
          };
        } finally {
          await reader.closeRead();
          reading.close();
        }
      };
    const candidates: Candidate[] = listing.snapshots.map((s) => ({
      name: s.id,
      time: s.time,
      bytes: s.body.pageCount * s.body.pageSize,
      sha256: s.id,
      plainSha256: s.body.facts?.imageSha256,
      fingerprint: s.body.facts?.fingerprint,
      journalMode: s.body.facts?.journalMode,
      source: spec.name,
      host,
      idPrefix: true,
      open: () => Promise.reject(new Error('a snapshot is read with fetchImage')),
      fetchImage: fetchImage(s.id),
    }));
    for (const problem of listing.problems)
      candidates.push({
        name: problem.id,
        time: new Date(0),
        bytes: 0,
        source: spec.name,
        host,
        idPrefix: true,
        open: () => Promise.reject(new Error('a snapshot is read with fetchImage')),
        fetchImage: () =>
          Promise.reject(new RepositoryDamagedError(`snapshot ${shortId(problem.id)}: ${problem.error}`)),
      });
    return candidates;
  } finally {
    await repo?.closeRead();
    store.close();
  }
}
