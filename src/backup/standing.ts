import type { VerificationRecord } from '../catalog/index.js';

/**
 * How retention sees one backup: the series it belongs to, whether it is known to be good, and whether it
 * must be set aside because its newest verification failed. Pure: from what the catalog and the copy's
 * metadata say.
 */
export interface Standing {
  group: 'manual' | 'scheduled';
  good: boolean;
  failed?: string;
}

export interface BackupFacts {
  /** The trigger recorded with the backup; absent for backups made before litekeep recorded it. */
  trigger?: string;
  /** integrity_check result at creation; absent when the catalog does not know the backup. */
  integrity?: string;
  /** Found on disk after the catalog was lost: its checks at creation are unknown. */
  recovered?: boolean;
}

export function standingOf(facts: BackupFacts, verdict?: VerificationRecord): Standing {
  const group = facts.trigger === 'manual' ? 'manual' : 'scheduled';
  if (verdict?.status === 'failed') {
    return {
      group,
      good: false,
      failed: `failed verification ${verdict.at ?? ''}: ${verdict.error ?? 'failed'}`.replace('  ', ' '),
    };
  }
  const checkedAtCreation = facts.integrity === 'ok' && facts.recovered !== true;
  return { group, good: verdict?.status === 'ok' || checkedAtCreation };
}
