export {
  loadConfig,
  targetForPath,
  CONFIG_LEAVES,
  envNamesOf,
  isSecretKey,
  isValidHostName,
} from './load.js';
export type { LoadConfigOptions, ResolvedConfig, DatabaseTarget } from './load.js';
export { configSchema, type LitekeepConfig } from './schema.js';
export { ConfigError, parseDurationMs, envNameFor } from './settings.js';
export { resolveDatabaseLocation } from './database-url.js';
export { describeConfig, type ConfigEntry } from './describe.js';
