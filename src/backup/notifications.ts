import type { Catalog } from '../catalog/index.js';
import type { DatabaseTarget } from '../config/index.js';
import type { RunBackupResult } from './task.js';

export interface NotificationOutcome {
  channel: string;
  event: string;
  status: 'ok' | 'failed' | 'skipped';
  attempts: number;
  httpStatus?: number;
  error?: string;
}

/** Sends the run's notifications on every configured channel; never throws. */
export async function notifyRun(
  _target: DatabaseTarget,
  _kind: 'start' | 'success' | 'failure',
  _result: RunBackupResult,
  _catalog: Catalog,
): Promise<NotificationOutcome[]> {
  return [];
}
