import os from 'node:os';
import path from 'node:path';

/**
 * The settings of each destination type that name files on this machine, which are relative to the config file
 * that names them (like every path). An SFTP destination's `path` is on the server, so it is not among them.
 */
const LOCAL_PATH_SETTINGS: Record<string, readonly string[]> = {
  local: ['path'],
  'google-drive': ['credentials'],
  s3: [],
  rclone: ['rcloneConfig'],
  sftp: ['keyFile', 'knownHosts'],
};

/** A destination entry with its local paths absolute (`~/` is the home folder, as in ssh and rclone). */
export function resolveDestinationPaths(
  entry: Record<string, unknown>,
  base: string,
): Record<string, unknown> {
  const out = { ...entry };
  const keys = LOCAL_PATH_SETTINGS[String(entry.type)] ?? ['path', 'credentials'];
  for (const key of keys) {
    const value = out[key];
    if (typeof value !== 'string' || value === '') continue;
    const expanded =
      value === '~' || value.startsWith('~/') ? path.join(os.homedir(), value.slice(1)) : value;
    out[key] = path.resolve(base, expanded);
  }
  return out;
}
