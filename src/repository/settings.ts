/* Validation of these keys is in src/config/destinations.ts, with every other destination key. */

/** How a destination keeps backups: one file per backup (default), or an incremental repository. */
export type DestinationFormat = 'full' | 'incremental';

export function formatOf(settings: Record<string, unknown>): DestinationFormat {
  return settings.format === 'incremental' ? 'incremental' : 'full';
}

export function packSizeOf(settings: Record<string, unknown>): number | undefined {
  const v = settings.packSize;
  return typeof v === 'number' ? v : typeof v === 'string' && v !== '' ? Number(v) : undefined;
}
