import path from 'node:path';
import type { Command } from 'commander';
import { addConfigOptions, resolveConfig, type CommonOptions } from '../context.js';
import { print } from '../output.js';

interface AuthFlags extends CommonOptions {
  clientSecrets?: string;
  clientId?: string;
  clientSecret?: string;
  credentials?: string;
  serviceAccount?: string;
  noBrowser?: boolean;
  browser?: boolean;
}

export function registerAuth(program: Command): void {
  const auth = program.command('auth').description('authorize off-site destinations');
  const google = auth
    .command('google')
    .description('authorize Google Drive (drive.file scope) and save the credentials file (mode 0600)')
    .option(
      '--client-secrets <file>',
      'the "Desktop app" OAuth client JSON from Google Cloud (or drive.clientSecrets)',
    )
    .option('--client-id <id>', 'OAuth client id (instead of --client-secrets)')
    .option('--client-secret <secret>', 'OAuth client secret (instead of --client-secrets)')
    .option(
      '--credentials <file>',
      'where to save (default GOOGLE_APPLICATION_CREDENTIALS or ./google_user_credentials.json)',
    )
    .option(
      '--service-account <key.json>',
      'use a service-account key instead (warning: no storage quota of its own)',
    )
    .option('--no-browser', 'do not try to open a browser; paste the code instead');
  addConfigOptions(google);
  google.action(async (options: AuthFlags) => {
    // Google's auth library is loaded by this command only.
    const { authorizeGoogle, installServiceAccountCredentials } =
      await import('../../destinations/google-auth.js');
    const resolved = resolveConfig(options);
    const drive = resolved.config.drive;
    const credentialsPath = path.resolve(
      options.credentials ?? drive.credentials ?? path.join(resolved.cwd, 'google_user_credentials.json'),
    );
    if (options.serviceAccount) {
      const warning = await installServiceAccountCredentials(
        path.resolve(options.serviceAccount),
        credentialsPath,
      );
      print(`saved service-account credentials to ${credentialsPath}`);
      process.stderr.write(`warning: ${warning}\n`);
      return;
    }
    const result = await authorizeGoogle({
      credentialsPath,
      clientSecretsPath: options.clientSecrets ?? drive.clientSecrets,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      input: process.stdin,
      openBrowser: options.browser !== false,
      endpoints: { authUrl: drive.authUrl, tokenUrl: drive.tokenUrl },
    });
    process.stdin.unref?.();
    process.stdin.destroy();
    print(`saved Drive credentials to ${result.credentialsPath} (scope ${result.scope}, via ${result.via})`);
    print('backups now go to Google Drive after each local backup; test with: litekeep backup');
  });
}
