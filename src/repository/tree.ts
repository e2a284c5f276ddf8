import { RepositoryDamagedError } from './errors.js';
import { decodeTreeBlock, FormatError, keys } from './format.js';
import { shortId } from './ids.js';
import type { LocalIndex } from './local-index.js';
import { FetchedPack } from './fetch.js';
import type { Repository } from './repository.js';

/**
 * Reads tree blocks by id, each tree pack downloaded once, and calls `onBlock` with each block's chunk ids.
 * A block whose bytes do not hash to its id (when the id key is at hand) or that no index lists is an error
 * naming it. Tree packs are never encrypted: collection and check read them without the identity.
 */
export async function readTreeBlocks(
  repo: Repository,
  index: LocalIndex,
  treeIds: Iterable<string>,
  workDir: string,
  onBlock: (treeId: string, chunkIds: Buffer[]) => void,
  options: { signal?: AbortSignal; onMissing?: (treeId: string, error: Error) => void } = {},
): Promise<void> {
  const byPack = new Map<string, string[]>();
  for (const id of new Set(treeIds)) {
    const location = index.locate(Buffer.from(id, 'hex'));
    if (!location) {
      const error = new RepositoryDamagedError(
        `tree block ${shortId(id)} is in no index of ${repo.location}; run litekeep check`,
      );
      if (options.onMissing) {
        options.onMissing(id, error);
        continue;
      }
      throw error;
    }
    const list = byPack.get(location.pack) ?? [];
    list.push(id);
    byPack.set(location.pack, list);
  }
  for (const [packId, ids] of byPack) {
    options.signal?.throwIfAborted();
    let pack: FetchedPack;
    try {
      pack = await FetchedPack.fetch(repo, packId, 'tree', workDir, options.signal);
    } catch (error) {
      if (!options.onMissing) throw error;
      for (const id of ids) options.onMissing(id, error as Error);
      continue;
    }
    try {
      const table = pack.table();
      let cached: { n: number; bytes: Buffer } | undefined;
      for (const id of ids) {
        const entry = table.get(id);
        if (!entry) {
          const error = new RepositoryDamagedError(
            `tree pack ${shortId(packId)} does not hold tree block ${shortId(id)} that the index says it holds; run litekeep check`,
            keys.pack(packId),
          );
          if (!options.onMissing) throw error;
          options.onMissing(id, error);
          continue;
        }
        if (cached?.n !== entry.segment)
          cached = { n: entry.segment, bytes: await pack.segment(entry.segment) };
        const block = cached.bytes.subarray(entry.offset, entry.offset + entry.length);
        if (repo.hasher && !repo.hasher.id(block).equals(entry.id))
          throw new RepositoryDamagedError(
            `tree pack ${shortId(packId)} is damaged: tree block ${shortId(id)} does not match its id`,
            keys.pack(packId),
          );
        let chunkIds: Buffer[];
        try {
          chunkIds = decodeTreeBlock(block, `tree block ${shortId(id)}`);
        } catch (error) {
          if (error instanceof FormatError)
            throw new RepositoryDamagedError(error.message, keys.pack(packId));
          throw error;
        }
        onBlock(id, chunkIds);
      }
    } finally {
      await pack.close();
    }
  }
}
