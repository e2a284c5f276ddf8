import { ConfigError } from '../config/index.js';
import { MAX_PACK_SIZE, MIN_PACK_SIZE } from './format.js';

/** How a destination keeps backups: one file per backup (default), or an incremental repository. */
export type DestinationFormat = 'full' | 'incremental';

/** The destination keys this capability adds to every destination type. */
export const REPOSITORY_KEYS = ['format', 'packSize'];

export function formatOf(settings: Record<string, unknown>): DestinationFormat {
  return settings.format === 'incremental' ? 'incremental' : 'full';
}

export function packSizeOf(settings: Record<string, unknown>): number | undefined {
  const v = settings.packSize;
  return typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : undefined;
}

/** Checks `format` and `packSize` of one destination entry; throws a ConfigError naming the key and the fix. */
export function validateRepositorySettings(entry: Record<string, unknown>, where: string): void {
  if (entry.format !== undefined && entry.format !== 'full' && entry.format !== 'incremental')
    throw new ConfigError(`invalid ${where}.format '${String(entry.format)}': expected full or incremental`);
  if (entry.packSize !== undefined) {
    const size = packSizeOf(entry);
    if (size === undefined || !Number.isInteger(size) || size < MIN_PACK_SIZE || size > MAX_PACK_SIZE)
      throw new ConfigError(
        `invalid ${where}.packSize ${JSON.stringify(entry.packSize)}: expected bytes from ${MIN_PACK_SIZE} (1 MiB) to ${MAX_PACK_SIZE} (256 MiB), e.g. 16777216`,
      );
    if (formatOf(entry) !== 'incremental')
      throw new ConfigError(
        `${where}.packSize applies only to format: incremental; remove it or set the format`,
      );
  }
}
