import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DRIVE_FILE_SCOPE,
  authorizeGoogle,
  installServiceAccountCredentials,
  loadGoogleCredentials,
  SERVICE_ACCOUNT_WARNING,
} from '../../src/destinations/google-auth.js';
import {
  DriveAuthRevokedError,
  DriveCredentialsInvalidError,
  DriveCredentialsMissingError,
  GoogleAuthFlowError,
  GoogleDriveDestination,
} from '../../src/destinations/google-drive.js';
import { startDriveServer, writeAuthorizedUser, type DriveServer } from '../servers/drive-server.js';

let server: DriveServer;
let dir: string;

beforeEach(async () => {
  server = await startDriveServer();
  dir = await mkdtemp(join(tmpdir(), 'litekeep-drive-auth-'));
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function destination(credentialsPath: string): GoogleDriveDestination {
  return new GoogleDriveDestination({
    credentialsPath,
    retryBaseMs: 1,
    endpoints: { apiRootUrl: server.url, tokenUrl: server.tokenUrl },
  });
}

async function desktopClientFile(): Promise<string> {
  const path = join(dir, 'client_secret.json');
  await writeFile(
    path,
    JSON.stringify({
      installed: {
        client_id: server.clientId,
        client_secret: server.clientSecret,
        redirect_uris: ['http://localhost'],
      },
    }),
  );
  return path;
}

/** What a browser does with the authorize URL: Google answers with a redirect to the loopback address. */
async function authorizeInBrowser(url: string): Promise<string> {
  const res = await fetch(url, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return res.headers.get('location')!;
}

describe('credentials', () => {
  it('a missing credentials file tells the user to run `litekeep auth google`', async () => {
    const error = await destination(join(dir, 'nope.json'))
      .list()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveCredentialsMissingError);
    expect((error as Error).message).toContain('run `litekeep auth google`');
  });

  it('unreadable JSON and a client-secrets file in its place are DriveCredentialsInvalidError', async () => {
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{"type": "authorized_user",');
    await expect(destination(broken).list()).rejects.toBeInstanceOf(DriveCredentialsInvalidError);
    await expect(loadGoogleCredentials(await desktopClientFile())).rejects.toThrow(/client secrets file/);
    const partial = join(dir, 'partial.json');
    await writeFile(partial, JSON.stringify({ type: 'authorized_user', client_id: 'x' }));
    await expect(loadGoogleCredentials(partial)).rejects.toThrow(/without client_secret, refresh_token/);
  });

  it('a revoked or expired refresh token is DriveAuthRevokedError naming the fix', async () => {
    const credentialsPath = await writeAuthorizedUser(server, dir);
    server.faults.invalidGrant = true;
    const error = await destination(credentialsPath)
      .list()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DriveAuthRevokedError);
    expect((error as Error).message).toMatch(/invalid_grant.*litekeep auth google.*7 days/);
    // One refresh attempt, no retry storm against the token endpoint.
    expect(server.requests.filter((r) => r.path === '/token')).toHaveLength(1);
  });

  it('a service-account key is accepted with a clear storage-quota warning', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPath = join(dir, 'sa-key.json');
    await writeFile(
      keyPath,
      JSON.stringify({
        type: 'service_account',
        client_email: 'backup@project.iam.gserviceaccount.com',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      }),
    );
    const installed = join(dir, 'conf', 'google.json');
    expect(await installServiceAccountCredentials(keyPath, installed)).toBe(SERVICE_ACCOUNT_WARNING);
    expect((await stat(installed)).mode & 0o777).toBe(0o600);
    const loaded = await loadGoogleCredentials(installed);
    expect(loaded.kind).toBe('service_account');
    expect(loaded.warning).toMatch(/no Google Drive storage quota.*shared drive/);
  });
});

describe('authorizeGoogle', () => {
  it('runs the loopback flow with PKCE and writes a 0600 authorized_user file that works', async () => {
    const credentialsPath = join(dir, 'new', 'google.json');
    const lines: string[] = [];
    const pages: string[] = [];
    const result = await authorizeGoogle({
      credentialsPath,
      clientSecretsPath: await desktopClientFile(),
      endpoints: { authUrl: server.authUrl, tokenUrl: server.tokenUrl },
      log: (line) => lines.push(line),
      openBrowser: async (url) => {
        const back = await authorizeInBrowser(url);
        const res = await fetch(back);
        pages.push(`${res.status} ${await res.text()}`);
      },
    });

    expect(result).toEqual({ credentialsPath, scope: DRIVE_FILE_SCOPE, via: 'loopback' });
    expect(pages[0]).toMatch(/^200 .*authorized/);
    expect(lines.some((l) => l.includes(server.authUrl))).toBe(true);
    const [auth] = server.authorizations;
    expect(auth).toMatchObject({
      scope: DRIVE_FILE_SCOPE,
      code_challenge_method: 'S256',
      access_type: 'offline',
      client_id: server.clientId,
    });
    expect(auth.redirect_uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    expect((await stat(credentialsPath)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'new'))).mode & 0o777).toBe(0o700);
    const saved = JSON.parse(await readFile(credentialsPath, 'utf8'));
    expect(saved).toEqual({
      type: 'authorized_user',
      client_id: server.clientId,
      client_secret: server.clientSecret,
      refresh_token: expect.any(String),
    });
    expect(server.refreshTokens.has(saved.refresh_token)).toBe(true);
    // The saved file is good enough for the destination: a token refresh and a listing succeed.
    expect(await destination(credentialsPath).list()).toEqual([]);
  });

  it('accepts the redirect address pasted by hand, ignoring one from another attempt', async () => {
    const input = new PassThrough();
    const credentialsPath = join(dir, 'google.json');
    const lines: string[] = [];
    const result = await authorizeGoogle({
      credentialsPath,
      clientId: server.clientId,
      clientSecret: server.clientSecret,
      endpoints: { authUrl: server.authUrl, tokenUrl: server.tokenUrl },
      input,
      log: (line) => lines.push(line),
      openBrowser: async (url) => {
        // The browser is on another machine: its redirect to 127.0.0.1 never arrives here.
        const back = new URL(await authorizeInBrowser(url));
        const stale = new URL(back);
        stale.searchParams.set('state', 'from-another-run');
        input.write(`${stale}\n`);
        input.write(`  ${back}  \n`);
      },
    });
    expect(result.via).toBe('pasted');
    expect(lines.some((l) => l.startsWith('Ignored:'))).toBe(true);
    const saved = JSON.parse(await readFile(credentialsPath, 'utf8'));
    expect(server.refreshTokens.has(saved.refresh_token)).toBe(true);
  });

  it('accepts a bare pasted code', async () => {
    const input = new PassThrough();
    const credentialsPath = join(dir, 'google.json');
    const result = await authorizeGoogle({
      credentialsPath,
      clientId: server.clientId,
      clientSecret: server.clientSecret,
      endpoints: { authUrl: server.authUrl, tokenUrl: server.tokenUrl },
      input,
      log: () => undefined,
      openBrowser: async (url) => {
        const code = new URL(await authorizeInBrowser(url)).searchParams.get('code')!;
        input.write(`${code}\n`);
      },
    });
    expect(result.via).toBe('pasted');
    expect((await stat(credentialsPath)).mode & 0o777).toBe(0o600);
  });

  it('a code the token endpoint rejects is a clear GoogleAuthFlowError and writes nothing', async () => {
    const input = new PassThrough();
    const credentialsPath = join(dir, 'google.json');
    const error = await authorizeGoogle({
      credentialsPath,
      clientId: server.clientId,
      clientSecret: server.clientSecret,
      endpoints: { authUrl: server.authUrl, tokenUrl: server.tokenUrl },
      input,
      log: () => undefined,
      openBrowser: () => input.write('4/not-a-real-code\n'),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GoogleAuthFlowError);
    expect((error as Error).message).toMatch(/invalid_grant.*litekeep auth google/);
    await expect(stat(credentialsPath)).rejects.toThrow(/ENOENT/);
  });
});
