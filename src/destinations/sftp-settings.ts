import fs from 'node:fs';
import os from 'node:os';
import { posix } from 'node:path';
import { ConfigError } from '../config/index.js';

// Apart from the SFTP client, so that checking a configuration loads no SSH library.

export function defaultKnownHosts(): string {
  return posix.join(os.homedir(), '.ssh', 'known_hosts');
}

/** Checked when the configuration is read (exit 2), before any connection. */
export function checkSftpSettings(settings: Record<string, unknown>, where: string): void {
  if (typeof settings.host !== 'string' || settings.host.trim() === '')
    throw new ConfigError(`${where} (sftp) needs 'host': the SSH server's name or address`);
  if (typeof settings.path !== 'string' || settings.path.trim() === '')
    throw new ConfigError(
      `${where} (sftp) needs 'path': the folder on the server, e.g. "backups" or "/srv/backups"`,
    );
  const port = settings.port === undefined ? 22 : Number(settings.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new ConfigError(
      `invalid ${where}.port '${String(settings.port)}': expected a port number (1–65535)`,
    );
  if (typeof settings.keyFile === 'string') {
    if (!fs.existsSync(settings.keyFile))
      throw new ConfigError(
        `${where}.keyFile ${settings.keyFile} does not exist; give the path of the private key`,
      );
    // Readable by this user, checked at start: otherwise every run fails at upload time (exit 3) instead.
    try {
      fs.accessSync(settings.keyFile, fs.constants.R_OK);
    } catch (error) {
      throw new ConfigError(
        `${where}.keyFile ${settings.keyFile} cannot be read (${(error as NodeJS.ErrnoException).code}); ` +
          "run litekeep as the key's owner or fix its permissions",
      );
    }
  }
  const knownHosts = typeof settings.knownHosts === 'string' ? settings.knownHosts : defaultKnownHosts();
  if (!fs.existsSync(knownHosts)) {
    const host = settings.host;
    throw new ConfigError(
      `${where}: there is no known_hosts file at ${knownHosts}, so the SSH server's key cannot be checked; add it ` +
        `(ssh-keyscan -p ${port} ${host} >> ${knownHosts}, after checking the fingerprint on the server) or set 'knownHosts'`,
    );
  }
}
