/**
 * litekeep's public API: what the CLI uses, for Node programs that embed backups (the seed's BackupManager,
 * load_config, BackupRotationPolicy, run_backup_task, schedule_backup_task and upload_backup_to_drive).
 */
export {
  loadConfig,
  targetForPath,
  describeConfig,
  ConfigError,
  resolveDatabaseLocation,
} from './config/index.js';
export type {
  LoadConfigOptions,
  ResolvedConfig,
  DatabaseTarget,
  LitekeepConfig,
  ConfigEntry,
} from './config/index.js';
/** The seed's name for the loaded configuration: what `loadConfig()` returns. */
export type { ResolvedConfig as BackupConfig } from './config/index.js';

export { BackupManager, retentionPolicyOf } from './backup/manager.js';
export type {
  BackupResult,
  BackupEntry,
  BackupListing,
  CreateBackupOptions,
  PruneDecision,
  PruneResult,
} from './backup/manager.js';
export { runBackupTask, runBackupForTarget, worstExitCode } from './backup/task.js';
export type { RunBackupOptions, RunBackupResult, RunBackupTaskOptions, RunTrigger } from './backup/task.js';
export { scheduleBackupTask, runDaemon, statusFromCatalog } from './backup/daemon.js';
export type { BackupSchedule, ScheduleBackupTaskOptions } from './backup/daemon.js';
export { runDestinations, pruneDestination } from './backup/offsite.js';
export { statusOf, listRemote, type DatabaseStatus } from './backup/status.js';
export type { DestinationOutcome, DestinationStatus, DestinationState } from './backup/offsite.js';
export { evaluateHealth, renderMetrics } from './scheduler/index.js';
export { collectStatus, renderPage } from './web/index.js';
export type { StatusDocument, StatusSource } from './web/index.js';
export type { DaemonStatus, HealthReport } from './scheduler/index.js';

export {
  planRetention,
  applySafetyRails,
  parseRetentionPolicy,
  assertUsablePolicy,
  describePolicy,
  RotationPolicy,
  RetentionPolicyError,
  DEFAULT_RETENTION,
} from './retention/index.js';
export type { RetentionPolicy, RetentionPlan, Decision, NamedBackup } from './retention/index.js';

export { restoreBackup, verifyBackup, listCandidates } from './restore/index.js';
export type { RestoreOptions, RestoreResult, VerifyResult } from './restore/index.js';

export {
  REPOSITORY_VERSION,
  checkDestinations,
  pruneRepository,
  Repository,
  writeSnapshot,
  restoreImage,
} from './repository/index.js';
export type { BlobStore, CheckReport, RepositoryPruneResult, SnapshotOutcome } from './repository/index.js';

export { Catalog } from './catalog/index.js';
export type { BackupRecord, RunRecord, HistoryEvent, Fingerprint } from './catalog/index.js';

export { takeSnapshot, inspectDatabase } from './snapshot/index.js';
export {
  writeArtifact,
  openArtifact,
  generateIdentity,
  readIdentityFile,
  sha256File,
} from './pipeline/index.js';

export {
  GoogleDriveDestination,
  uploadBackupToDrive,
  downloadVerified,
} from './destinations/google-drive.js';
export { authorizeGoogle } from './destinations/google-auth.js';
export { S3Destination } from './destinations/s3.js';
export { LocalDestination } from './destinations/local.js';
export { RcloneDestination } from './destinations/rclone.js';
export { SftpDestination } from './destinations/sftp.js';
export type { Destination, ArtifactMetadata, RemoteObject, PutResult } from './destinations/types.js';

export { notify, notifyTest } from './notify/index.js';
export type { RunEvent, NotifyOptions, NotificationResult } from './notify/index.js';

export { backupFileName, parseBackupName } from './naming.js';
export { LitekeepError, EXIT } from './util/errors.js';
export { VERSION } from './version.js';
