import type { Command } from 'commander';
import { loadConfig, targetForPath, type DatabaseTarget, type ResolvedConfig } from '../config/index.js';
import { targetForBackupFolder } from '../backup/folder.js';
import { destinationSpecs } from '../destinations/factory.js';
import { EXIT, LitekeepError } from '../util/errors.js';

export interface CommonOptions {
  config?: string;
  envFile?: string;
  db?: string;
  dir?: string;
  json?: boolean;
  [key: string]: unknown;
}

export function addConfigOptions(command: Command): Command {
  return command
    .option('--config <path>', 'config file (default: litekeep.yml/.yaml/.json here, or LITEKEEP_CONFIG)')
    .option('--env-file <path>', '.env file to read (default: .env here)');
}

export function addTargetOptions(command: Command): Command {
  return addConfigOptions(command)
    .option('--db <path|url|name>', 'database to use (path, sqlite:/// URL, or a name from databases:)')
    .option('--dir <dir>', 'backup folder (overrides BACKUP_DIR)');
}

const RETENTION_FLAGS: Record<string, string> = {
  keepLast: 'retention.last',
  keepHourly: 'retention.hourly',
  keepDaily: 'retention.daily',
  keepWeekly: 'retention.weekly',
  keepMonthly: 'retention.monthly',
  keepYearly: 'retention.yearly',
  keepWithin: 'retention.within',
  keepManual: 'retention.manual',
  keepPitr: 'retention.pitr',
};

export function addRetentionOptions(command: Command): Command {
  return command
    .option('--keep-last <n>', 'keep the last n backups')
    .option('--keep-hourly <n>', 'keep the newest backup of each of the last n hours')
    .option('--keep-daily <n>', 'keep the newest backup of each of the last n days')
    .option('--keep-weekly <n>', 'keep the newest backup of each of the last n ISO weeks')
    .option('--keep-monthly <n>', 'keep the newest backup of each of the last n months')
    .option('--keep-yearly <n>', 'keep the newest backup of each of the last n years')
    .option('--keep-within <duration>', 'keep every backup within this duration of the newest (30d, 1y2m)')
    .option('--keep-manual <duration>', 'keep every manual backup within this duration (default 7d)')
    .option(
      '--keep-pitr <duration>',
      'with replication: keep WAL segments so that every moment this close to now restores to the second (default 7d)',
    );
}

/** Flags that set config keys, as loadConfig overrides. */
export function overridesFrom(
  options: CommonOptions,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const overrides: Record<string, unknown> = { ...extra };
  // Key by key, like every other source: a flag changes only the rule it names, so `--keep-daily 14` never
  // silently drops the configured weekly and monthly backups.
  for (const [flag, key] of Object.entries(RETENTION_FLAGS)) {
    if (options[flag] !== undefined) overrides[key] = options[flag];
  }
  return overrides;
}

export function resolveConfig(options: CommonOptions, extra: Record<string, unknown> = {}): ResolvedConfig {
  const resolved = loadConfig({
    configPath: options.config,
    envFile: options.envFile,
    overrides: overridesFrom(options, extra),
  });
  // Destination settings are checked now (exit 2), not when the first upload tries them.
  const targets = resolved.databases.length
    ? resolved.databases
    : [
        {
          name: 'litekeep',
          path: '',
          backupDir: resolved.config.backupDir!,
          settings: resolved.config,
          driveConfigured: resolved.driveConfigured,
        },
      ];
  for (const target of targets) destinationSpecs(target, target.driveConfigured);
  return resolved;
}

/** "No database configured", saying where litekeep looked, so that a wrong folder or file name shows at once. */
export function noDatabaseError(resolved: ResolvedConfig, forFolder = false): LitekeepError {
  const config = resolved.configFile
    ? `config file ${resolved.configFile} (no database: or databases:)`
    : `no config file (litekeep.yml, litekeep.yaml or litekeep.json in ${resolved.cwd})`;
  const env = resolved.envFile
    ? `env file ${resolved.envFile} (no DATABASE_URL)`
    : `no .env file in ${resolved.cwd}`;
  return new LitekeepError(
    `no database configured: looked at ${config}, ${env} and the environment (no DATABASE_URL); ` +
      `set DATABASE_URL=sqlite:///path/to/app.db, add database: to litekeep.yml, or pass --db PATH` +
      (forFolder ? ' (or --dir to read a backup folder alone)' : ''),
    { exitCode: EXIT.usage },
  );
}

/**
 * The databases a command acts on: `--db` names a configured database or gives a path/URL; otherwise every
 * configured database. `--dir` replaces the backup folder.
 */
export function selectTargets(
  resolved: ResolvedConfig,
  options: CommonOptions,
  /** Commands that only read a backup folder (list, status, history) take `--dir` alone, without a database. */
  { folderAlone = false }: { folderAlone?: boolean } = {},
): DatabaseTarget[] {
  if (options.db) {
    const byName = resolved.databases.find((t) => t.name === options.db);
    if (byName) {
      if (!options.dir) return [byName];
      const dir = targetForPath(resolved, byName.path, options.dir).backupDir;
      return [{ ...byName, backupDir: dir, settings: { ...byName.settings, backupDir: dir } }];
    }
    return [targetForPath(resolved, options.db, options.dir)];
  }
  if (resolved.databases.length === 0) {
    if (folderAlone && options.dir) return [targetForBackupFolder(resolved, options.dir)];
    throw noDatabaseError(resolved, folderAlone);
  }
  if (options.dir) {
    if (resolved.databases.length > 1) {
      throw new LitekeepError('--dir needs --db when several databases are configured', {
        exitCode: EXIT.usage,
      });
    }
    return [targetForPath(resolved, resolved.databases[0].path, options.dir)];
  }
  return resolved.databases;
}
