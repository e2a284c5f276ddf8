export { Catalog, CATALOG_DIR, CATALOG_FILE } from './catalog.js';
export type {
  BackupRecord,
  RunRecord,
  UploadRecord,
  DeletionRecord,
  NotificationRecord,
  VerificationRecord,
  RestoreRecord,
  HistoryEvent,
  Fingerprint,
} from './catalog.js';
