import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseWithin } from '../retention/index.js';
import { didYouMean } from '../util/suggest.js';
import { isValidTimeZone, systemTimeZone } from '../util/time.js';
import { redactUrl } from '../util/redact.js';
import { resolveDatabaseLocation } from './database-url.js';
import { DRIVE_CHUNK_QUANTUM, httpUrlProblem, validateDestinations } from './destinations.js';
import { configSchema, DATABASE_OVERRIDE_KEYS, type LitekeepConfig } from './schema.js';
import { ConfigError, envNameFor, InvalidValue, isSetting, type Section, type Setting } from './settings.js';
import { resolveDestinationPaths } from '../destinations/local-paths.js';

// The parsers are loaded when there is a file to parse (synchronously: configuration loading is): a run
// configured by the environment alone loads neither.
const requireParser = createRequire(import.meta.url);
const yaml = (): typeof import('yaml') => requireParser('yaml') as typeof import('yaml');
const dotenv = (): typeof import('dotenv') => requireParser('dotenv') as typeof import('dotenv');

export interface LoadConfigOptions {
  /** Working folder: where `litekeep.yml` and `.env` are looked for (default `process.cwd()`). */
  cwd?: string;
  /** Explicit config file (`--config`); otherwise `LITEKEEP_CONFIG`, then `litekeep.{yml,yaml,json}` in cwd. */
  configPath?: string;
  /** Explicit .env file (`--env-file`); otherwise `LITEKEEP_ENV_FILE`, then `.env` in cwd when present. */
  envFile?: string;
  /** The process environment (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Values from flags, keyed by schema path (`retention.daily`), highest precedence. */
  overrides?: Record<string, unknown>;
}

/** A name a host may go by in remote copies (it becomes a folder or key segment). */
export function isValidHostName(host: string): boolean {
  return host.trim() !== '' && host.length <= 128 && !/[/\\\0]|^\.\.?$/.test(host);
}

export interface DatabaseTarget {
  /** Name used in sub-folders, remote keys and messages. */
  name: string;
  /** Absolute path of the live database. */
  path: string;
  /** Absolute folder holding this database's backups and its `.litekeep/` catalog. */
  backupDir: string;
  /** The whole configuration with this database's overrides applied. */
  settings: LitekeepConfig;
  /** Whether Google Drive is configured (a drive key set anywhere, or GOOGLE_APPLICATION_CREDENTIALS). */
  driveConfigured: boolean;
}

export interface ResolvedConfig {
  config: LitekeepConfig;
  /** Where each value came from, by schema path. */
  sources: Record<string, string>;
  configFile?: string;
  envFile?: string;
  cwd: string;
  /** The databases to back up; empty when none is configured. */
  databases: DatabaseTarget[];
  timeZone: string;
  driveConfigured: boolean;
}

const CONFIG_NAMES = ['litekeep.yml', 'litekeep.yaml', 'litekeep.json'];
/** Env names that steer loading, debugging or tests rather than set a config key. */
const META_ENV = new Set([
  'LITEKEEP_CONFIG',
  'LITEKEEP_ENV_FILE',
  'LITEKEEP_DEBUG',
  'LITEKEEP_NOTIFY_BACKOFF_MS',
]);

interface Leaf {
  path: string;
  setting: Setting<unknown>;
}

function collectLeaves(node: Section, prefix = ''): Leaf[] {
  const leaves: Leaf[] = [];
  for (const [key, child] of Object.entries(node.fields)) {
    const p = prefix ? `${prefix}.${key}` : key;
    if (isSetting(child)) leaves.push({ path: p, setting: child });
    else leaves.push(...collectLeaves(child, p));
  }
  return leaves;
}

export const CONFIG_LEAVES: readonly Leaf[] = collectLeaves(configSchema);
const LEAF_BY_PATH = new Map(CONFIG_LEAVES.map((leaf) => [leaf.path, leaf]));
const LEAF_BY_ENV = new Map<string, Leaf>();
for (const leaf of CONFIG_LEAVES) {
  LEAF_BY_ENV.set(envNameFor(leaf.path), leaf);
  for (const alias of leaf.setting.aliases ?? []) LEAF_BY_ENV.set(alias, leaf);
}

export function envNamesOf(configPath: string): string[] {
  const leaf = LEAF_BY_PATH.get(configPath);
  return leaf ? [envNameFor(leaf.path), ...(leaf.setting.aliases ?? [])] : [];
}

export function isSecretKey(configPath: string): boolean {
  return LEAF_BY_PATH.get(configPath)?.setting.secret === true;
}

function describeRaw(raw: unknown): string {
  const text = typeof raw === 'string' ? `'${raw}'` : JSON.stringify(raw);
  return text && text.length > 60 ? `${text.slice(0, 57)}...` : String(text);
}

function parseLeaf(leaf: Leaf, raw: unknown, source: string): unknown {
  try {
    return leaf.setting.parse(raw);
  } catch (error) {
    if (!(error instanceof InvalidValue)) throw error;
    const shown = leaf.setting.secret ? '(secret)' : describeRaw(raw);
    throw new ConfigError(`invalid ${leaf.path} ${shown} from ${source}: expected ${error.message}`);
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; ` +
        `check the path given by --config or LITEKEEP_CONFIG`,
    );
  }
  let data: unknown;
  try {
    data = file.endsWith('.json') ? JSON.parse(text) : yaml().parse(text);
  } catch (error) {
    const firstLine = (error as Error).message.split('\n')[0];
    throw new ConfigError(
      `config file ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${firstLine}`,
    );
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`config file ${file} must hold a map of settings at the top level`);
  }
  return data as Record<string, unknown>;
}

/** Flattens a nested config map into schema paths, rejecting keys the schema does not know. */
function flattenAgainstSchema(
  data: Record<string, unknown>,
  node: Section,
  source: string,
  prefix = '',
  out: Record<string, unknown> = {},
): Record<string, unknown> {
  for (const [key, value] of Object.entries(data)) {
    const p = prefix ? `${prefix}.${key}` : key;
    const child = node.fields[key];
    if (!child) {
      const known = Object.keys(node.fields);
      throw new ConfigError(
        `unknown key '${p}' in ${source}${didYouMean(key, known)}; known keys${prefix ? ` of ${prefix}` : ''}: ${known.join(', ')}`,
      );
    }
    if (isSetting(child)) {
      if (value !== null && value !== undefined) out[p] = value;
    } else {
      if (value === null || value === undefined) continue;
      if (
        child.shorthand &&
        (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      ) {
        out[`${p}.${child.shorthand}`] = value;
        continue;
      }
      if (typeof value !== 'object' || Array.isArray(value)) {
        throw new ConfigError(`invalid ${p} in ${source}: expected a map of settings`);
      }
      flattenAgainstSchema(value as Record<string, unknown>, child, source, p, out);
    }
  }
  return out;
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    node[part] ??= {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]] = value;
}

function buildTree(values: Map<string, unknown>): LitekeepConfig {
  const tree: Record<string, unknown> = {};
  for (const leaf of CONFIG_LEAVES) setPath(tree, leaf.path, values.get(leaf.path));
  return tree as unknown as LitekeepConfig;
}

function findConfigFile(options: LoadConfigOptions, cwd: string, env: NodeJS.ProcessEnv): string | undefined {
  const explicit = options.configPath ?? env.LITEKEEP_CONFIG;
  if (explicit) return path.resolve(cwd, explicit);
  return CONFIG_NAMES.map((name) => path.join(cwd, name)).find((file) => fs.existsSync(file));
}

function readEnvFile(file: string, explicit: boolean): Record<string, string> {
  try {
    return dotenv().parse(fs.readFileSync(file));
  } catch (error) {
    if (!explicit && (error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(
      `cannot read env file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; ` +
        `check the path given by --env-file`,
    );
  }
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Resolves the configuration from every source, lowest first: defaults < config file < .env file < process
 * environment < overrides (flags). Throws `ConfigError` (exit code 2) naming the key and its source.
 */
export function loadConfig(options: LoadConfigOptions = {}): ResolvedConfig {
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  const values = new Map<string, unknown>();
  const sources: Record<string, string> = {};
  const baseDirs = new Map<string, string>();

  for (const leaf of CONFIG_LEAVES) {
    if (leaf.setting.defaultValue !== undefined) {
      values.set(leaf.path, leaf.setting.defaultValue);
      sources[leaf.path] = 'default';
    }
  }

  const configFile = findConfigFile(options, cwd, env);
  if (configFile) {
    const source = `config file ${configFile}`;
    const flat = flattenAgainstSchema(readConfigFile(configFile), configSchema, source);
    for (const [p, raw] of Object.entries(flat)) {
      const leaf = LEAF_BY_PATH.get(p)!;
      values.set(p, parseLeaf(leaf, raw, source));
      sources[p] = source;
      baseDirs.set(p, path.dirname(configFile));
    }
  }

  const explicitEnvFile = options.envFile ?? env.LITEKEEP_ENV_FILE;
  const envFile = path.resolve(cwd, explicitEnvFile ?? '.env');
  const fileEnv = readEnvFile(envFile, explicitEnvFile !== undefined);
  const envFileUsed = Object.keys(fileEnv).length > 0 || explicitEnvFile !== undefined ? envFile : undefined;

  const applyEnv = (vars: Record<string, string | undefined>, source: string) => {
    for (const [name, raw] of Object.entries(vars)) {
      if (raw === undefined || raw === '') continue;
      const leaf = LEAF_BY_ENV.get(name);
      if (!leaf) {
        if (name.startsWith('LITEKEEP_') && !META_ENV.has(name)) {
          throw new ConfigError(
            `unknown setting ${name} in ${source}${didYouMean(name, [...LEAF_BY_ENV.keys(), ...META_ENV])}; ` +
              `litekeep reads LITEKEEP_ plus a config key in upper snake case (for example ` +
              `LITEKEEP_RETENTION_DAILY); run 'litekeep config --keys' for the list`,
          );
        }
        continue;
      }
      const where = `${source} (${name})`;
      values.set(leaf.path, parseLeaf(leaf, raw, where));
      sources[leaf.path] = where;
      baseDirs.set(leaf.path, cwd);
    }
  };
  if (envFileUsed) applyEnv(fileEnv, `env file ${envFile}`);
  applyEnv(env, 'environment');

  for (const [p, raw] of Object.entries(options.overrides ?? {})) {
    if (raw === undefined) continue;
    const leaf = LEAF_BY_PATH.get(p);
    if (!leaf) throw new Error(`internal: flag maps to unknown config key ${p}`);
    values.set(p, parseLeaf(leaf, raw, 'command line'));
    sources[p] = 'command line';
    baseDirs.set(p, cwd);
  }

  // Paths are relative to the file that named them, or to the working folder.
  for (const leaf of CONFIG_LEAVES) {
    const value = values.get(leaf.path);
    if (leaf.setting.isPath && typeof value === 'string' && leaf.path !== 'database') {
      values.set(leaf.path, path.resolve(baseDirs.get(leaf.path) ?? cwd, value));
    }
  }
  // A destination's folder or credentials file is relative to the file that named it, like every path.
  const destinations = values.get('destinations') as Record<string, unknown>[] | undefined;
  if (destinations) {
    const base = baseDirs.get('destinations') ?? cwd;
    values.set(
      'destinations',
      destinations.map((d) => resolveDestinationPaths(d, base)),
    );
  }
  // Impossible settings stop litekeep here, before any work: not at 03:00 after a local backup was made.
  const checkedDestinations = values.get('destinations') as Record<string, unknown>[] | undefined;
  if (checkedDestinations) validateDestinations(checkedDestinations, sources.destinations ?? 'configuration');
  for (const key of [
    'notify.ntfy.server',
    'notify.webhook.url',
    'notify.ping.url',
    'drive.apiUrl',
    'drive.tokenUrl',
    'drive.authUrl',
  ]) {
    const url = values.get(key);
    const problem = typeof url === 'string' ? httpUrlProblem(url) : undefined;
    if (problem) {
      const shown = isSecretKey(key) ? '(secret)' : `'${redactUrl(String(url))}'`;
      throw new ConfigError(
        `invalid ${key} ${shown} from ${sources[key]}: expected an http(s) URL such as https://example.com/path (${problem})`,
      );
    }
  }
  const chunkSize = values.get('drive.chunkSize');
  if (typeof chunkSize === 'number' && chunkSize % DRIVE_CHUNK_QUANTUM !== 0) {
    throw new ConfigError(
      `invalid drive.chunkSize ${chunkSize} from ${sources['drive.chunkSize']}: expected a multiple of 262144 (256 KiB), such as 8388608 (8 MiB)`,
    );
  }

  const database = values.get('database');
  if (typeof database === 'string') {
    values.set(
      'database',
      resolveDatabaseLocation(database, baseDirs.get('database') ?? cwd, sources.database ?? 'configuration'),
    );
  }

  if (values.get('backupDir') === undefined) {
    const workspace = env.AI_WORKSPACE || fileEnv.AI_WORKSPACE;
    if (workspace) {
      values.set('backupDir', path.resolve(cwd, workspace, 'backups', 'database'));
      sources.backupDir = `default from AI_WORKSPACE (${env.AI_WORKSPACE ? 'environment' : `env file ${envFile}`})`;
    } else {
      values.set('backupDir', path.resolve(cwd, 'backups'));
      sources.backupDir = 'default (./backups)';
    }
  }

  const timeZone = (values.get('timeZone') as string | undefined) ?? systemTimeZone();
  if (!isValidTimeZone(timeZone)) {
    throw new ConfigError(
      `invalid timeZone '${timeZone}' from ${sources.timeZone}: expected an IANA zone such as Europe/Berlin or UTC`,
    );
  }
  if (values.get('timeZone') === undefined) {
    values.set('timeZone', timeZone);
    sources.timeZone = 'default (system zone)';
  }

  const host = values.get('host') as string | undefined;
  if (host !== undefined && !isValidHostName(host)) {
    throw new ConfigError(
      `invalid host ${JSON.stringify(host)} from ${sources.host}: expected a name of 1-128 characters without ` +
        `'/' or '\\' that is unique among the machines sharing a destination`,
    );
  }

  const driveConfigured = Object.entries(sources).some(
    ([key, source]) => key.startsWith('drive.') && source !== 'default',
  );
  if (driveConfigured && values.get('drive.credentials') === undefined) {
    values.set('drive.credentials', path.resolve(cwd, 'google_user_credentials.json'));
    sources['drive.credentials'] = 'default (./google_user_credentials.json)';
  }
  for (const key of ['retention.within', 'drive.retention.within']) {
    const within = values.get(key);
    if (typeof within !== 'string') continue;
    try {
      parseWithin(within);
    } catch {
      throw new ConfigError(
        `invalid ${key} '${within}' from ${sources[key]}: expected a duration of years, months, weeks, days and hours such as 30d, 12h, 2w or 1y2m`,
      );
    }
  }
  const config = buildTree(values);
  const databases = resolveTargets(config, sources, baseDirs, configFile, cwd).map((t) => ({
    ...t,
    driveConfigured,
  }));
  return { config, sources, configFile, envFile: envFileUsed, cwd, databases, timeZone, driveConfigured };
}

function resolveTargets(
  config: LitekeepConfig,
  sources: Record<string, string>,
  baseDirs: Map<string, string>,
  configFile: string | undefined,
  cwd: string,
): DatabaseTarget[] {
  const backupDir = config.backupDir!;
  if (!config.databases || config.databases.length === 0) {
    if (!config.database) return [];
    return [
      {
        name: nameFromPath(config.database),
        path: config.database,
        backupDir,
        settings: config,
        driveConfigured: false,
      },
    ];
  }
  const source = sources.databases ?? 'configuration';
  const baseDir = baseDirs.get('databases') ?? (configFile ? path.dirname(configFile) : cwd);
  const seen = new Set<string>();
  return config.databases.map((entry, index) => {
    const name = String(entry.name);
    if (!NAME_PATTERN.test(name)) {
      throw new ConfigError(
        `invalid databases[${index}].name '${name}' in ${source}: use letters, digits, '.', '_' or '-' (it names a folder)`,
      );
    }
    if (seen.has(name))
      throw new ConfigError(`duplicate databases name '${name}' in ${source}: names must differ`);
    seen.add(name);
    const overrides: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(entry)) {
      if (key === 'name' || key === 'path') continue;
      if (!(DATABASE_OVERRIDE_KEYS as readonly string[]).includes(key)) {
        throw new ConfigError(
          `unknown key 'databases[${index}].${key}' in ${source}; a database may set name, path and ` +
            DATABASE_OVERRIDE_KEYS.join(', '),
        );
      }
      overrides[key] = value;
    }
    const where = `${source} (databases[${index}] '${name}')`;
    const flat = flattenAgainstSchema(overrides, configSchema, where);
    const settings = structuredClone(config);
    for (const [p, raw] of Object.entries(flat)) {
      let value = parseLeaf(LEAF_BY_PATH.get(p)!, raw, where);
      if (LEAF_BY_PATH.get(p)!.setting.isPath && typeof value === 'string')
        value = path.resolve(baseDir, value);
      setPath(settings as unknown as Record<string, unknown>, p, value);
    }
    const dbPath = resolveDatabaseLocation(String(entry.path), baseDir, where);
    const dir = flat.backupDir !== undefined ? settings.backupDir! : path.join(backupDir, name);
    settings.database = dbPath;
    settings.backupDir = dir;
    return { name, path: dbPath, backupDir: dir, settings, driveConfigured: false };
  });
}

/** The name of a database given by path alone: its file name without the extension, safe as a folder name. */
function nameFromPath(dbPath: string): string {
  const stem = path.basename(dbPath).replace(/\.(db|sqlite3?|sqlite)$/i, '');
  return stem.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[._-]+/, '') || 'database';
}

/** A single database given on the command line (`--db`), inheriting everything else. */
export function targetForPath(
  resolved: ResolvedConfig,
  location: string,
  backupDir?: string,
): DatabaseTarget {
  const dbPath = resolveDatabaseLocation(location, resolved.cwd, 'command line (--db)');
  const name = nameFromPath(dbPath);
  const settings = structuredClone(resolved.config);
  const dir = backupDir ? path.resolve(resolved.cwd, backupDir) : resolved.config.backupDir!;
  settings.database = dbPath;
  settings.backupDir = dir;
  return { name, path: dbPath, backupDir: dir, settings, driveConfigured: resolved.driveConfigured };
}
