import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { CodeChallengeMethod, JWT, OAuth2Client } from 'google-auth-library';
import {
  DriveCredentialsInvalidError,
  DriveCredentialsMissingError,
  GoogleAuthFlowError,
} from './drive-errors.js';
import { writeFileAtomic } from '../util/fs.js';

/** litekeep only ever needs the files it created itself: the narrowest Drive scope there is. */
export const DRIVE_FILE_SCOPE = 'https://www.googleapis.com/auth/drive.file';

export const SERVICE_ACCOUNT_WARNING =
  'Service accounts have no Google Drive storage quota of their own: uploads fail with storageQuotaExceeded ' +
  'unless the folder (folderId) is on a shared drive the service account is a member of. ' +
  'For a personal Drive use `litekeep auth google` instead.';

export interface GoogleEndpoints {
  /** Base URL of the Drive API, default `https://www.googleapis.com/`. */
  apiRootUrl?: string;
  /** OAuth token endpoint, default Google's. */
  tokenUrl?: string;
  /** OAuth authorize endpoint, default Google's. */
  authUrl?: string;
}

export type GoogleCredentialsKind = 'authorized_user' | 'service_account';

export interface LoadedGoogleCredentials {
  /** Signs requests and refreshes tokens (a `JWT` for service accounts, which extends OAuth2Client). */
  client: OAuth2Client;
  kind: GoogleCredentialsKind;
  /** Set for service accounts: the storage-quota caveat users must know about. */
  warning?: string;
}

type Json = Record<string, unknown>;

function str(json: Json, key: string): string | undefined {
  const value = json[key];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

async function readJsonFile(path: string): Promise<Json> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DriveCredentialsMissingError(path);
    throw new DriveCredentialsInvalidError(path, `cannot read it: ${code ?? String(err)}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new DriveCredentialsInvalidError(path, 'not valid JSON', { cause: err });
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new DriveCredentialsInvalidError(path, 'not a JSON object');
  return json as Json;
}

function tokenEndpoints(endpoints?: GoogleEndpoints) {
  return {
    ...(endpoints?.tokenUrl ? { oauth2TokenUrl: endpoints.tokenUrl } : {}),
    ...(endpoints?.authUrl ? { oauth2AuthBaseUrl: endpoints.authUrl } : {}),
  };
}

/** Reads an `authorized_user` or `service_account` JSON file and builds the client that signs Drive calls. */
export async function loadGoogleCredentials(
  path: string,
  endpoints?: GoogleEndpoints,
  options: { tokenTimeoutMs?: number } = {},
): Promise<LoadedGoogleCredentials> {
  // Token requests are small; a token endpoint that never answers must not hold a run forever.
  const transporterOptions = options.tokenTimeoutMs ? { timeout: options.tokenTimeoutMs } : undefined;
  const json = await readJsonFile(path);
  const type = str(json, 'type');
  if (type === 'authorized_user') {
    const clientId = str(json, 'client_id');
    const clientSecret = str(json, 'client_secret');
    const refreshToken = str(json, 'refresh_token');
    const missing = [
      !clientId && 'client_id',
      !clientSecret && 'client_secret',
      !refreshToken && 'refresh_token',
    ]
      .filter(Boolean)
      .join(', ');
    if (missing) throw new DriveCredentialsInvalidError(path, `authorized_user without ${missing}`);
    const client = new OAuth2Client({
      clientId,
      clientSecret,
      endpoints: tokenEndpoints(endpoints),
      transporterOptions,
    });
    client.setCredentials({ refresh_token: refreshToken });
    return { client, kind: 'authorized_user' };
  }
  if (type === 'service_account') {
    const email = str(json, 'client_email');
    const key = str(json, 'private_key');
    if (!email || !key)
      throw new DriveCredentialsInvalidError(path, 'service_account without client_email or private_key');
    const client = new JWT({
      email,
      key,
      scopes: [DRIVE_FILE_SCOPE],
      endpoints: tokenEndpoints(endpoints),
      transporterOptions,
    });
    return { client, kind: 'service_account', warning: SERVICE_ACCOUNT_WARNING };
  }
  if (json.installed || json.web)
    throw new DriveCredentialsInvalidError(
      path,
      'this is an OAuth client secrets file, not credentials; give it to `litekeep auth google` instead',
    );
  throw new DriveCredentialsInvalidError(path, `unknown credentials type ${JSON.stringify(type ?? null)}`);
}

/**
 * Validates a service-account key and installs it at the credentials path (atomically, mode 0600).
 * Returns the storage-quota warning, which the CLI must show.
 */
export async function installServiceAccountCredentials(
  keyPath: string,
  credentialsPath: string,
): Promise<string> {
  const json = await readJsonFile(keyPath);
  if (str(json, 'type') !== 'service_account' || !str(json, 'client_email') || !str(json, 'private_key'))
    throw new DriveCredentialsInvalidError(
      keyPath,
      'not a service_account key with client_email and private_key',
    );
  await writeFileAtomic(credentialsPath, JSON.stringify(json, null, 2) + '\n', 0o600);
  return SERVICE_ACCOUNT_WARNING;
}

export interface OAuthClientSecrets {
  clientId: string;
  clientSecret: string;
}

/** Reads a Google "Desktop app" client JSON (`{installed:{client_id, client_secret, ...}}`). */
export async function readClientSecrets(path: string): Promise<OAuthClientSecrets> {
  let json: Json;
  try {
    json = await readJsonFile(path);
  } catch (err) {
    const why = err instanceof DriveCredentialsMissingError ? 'no such file' : (err as Error).message;
    throw new GoogleAuthFlowError(
      `Cannot use the OAuth client file ${path} (${why}): download the JSON of a "Desktop app" OAuth client from Google Cloud Console > APIs & Services > Credentials.`,
      { cause: err },
    );
  }
  if (json.web && !json.installed)
    throw new GoogleAuthFlowError(
      `${path} is a "Web application" OAuth client, which cannot use the loopback redirect: create a "Desktop app" OAuth client and use its JSON.`,
    );
  const inner = (json.installed ?? json) as Json;
  const clientId = str(inner, 'client_id');
  const clientSecret = str(inner, 'client_secret');
  if (!clientId || !clientSecret)
    throw new GoogleAuthFlowError(
      `${path} has no installed.client_id/client_secret: use the JSON of a "Desktop app" OAuth client from Google Cloud Console.`,
    );
  return { clientId, clientSecret };
}

export interface GoogleAuthorizeOptions {
  /** Where the `authorized_user` JSON is written (atomically, mode 0600). */
  credentialsPath: string;
  /** A "Desktop app" client JSON; or give clientId and clientSecret. */
  clientSecretsPath?: string;
  clientId?: string;
  clientSecret?: string;
  /** Where a code or the full redirect URL may be pasted by hand (e.g. process.stdin). */
  input?: NodeJS.ReadableStream;
  /** Receives the instructions and the URL, one line each (default: stderr). */
  log?: (line: string) => void;
  /** true (default): try `xdg-open`/`open`, silently skip when absent. A function replaces the browser. */
  openBrowser?: boolean | ((url: string) => unknown);
  endpoints?: GoogleEndpoints;
  /** How long to wait for the user, default 10 minutes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface GoogleAuthorizeResult {
  credentialsPath: string;
  scope: string;
  /** How the code arrived. */
  via: 'loopback' | 'pasted';
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function tryOpenBrowser(url: string): Promise<boolean> {
  let command: string | undefined;
  if (process.platform === 'darwin') command = 'open';
  else if (process.platform !== 'win32' && (process.env.DISPLAY || process.env.WAYLAND_DISPLAY)) {
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (dir && (await isExecutable(join(dir, 'xdg-open')))) {
        command = join(dir, 'xdg-open');
        break;
      }
    }
  }
  if (!command) return false;
  try {
    const child = spawn(command, [url], { stdio: 'ignore', detached: true });
    // A missing or broken opener must never fail the authorization: the URL is printed anyway.
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}

interface CodeArrival {
  code: string;
  via: 'loopback' | 'pasted';
}

function page(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', connection: 'close' });
  res.end(`<!doctype html><meta charset="utf-8"><title>litekeep</title><p>${text}</p>`);
}

/** Pulls the code out of what a user pasted: a bare code, or the whole address the browser landed on. */
function parsePasted(line: string, state: string): { code?: string; error?: string; ignored?: string } {
  const text = line.trim();
  if (!text) return {};
  if (/^[a-z]+:\/\//i.test(text) || text.startsWith('?') || /(^|[?&])(code|error)=/.test(text)) {
    let params: URLSearchParams;
    try {
      params = new URL(text, 'http://127.0.0.1/').searchParams;
    } catch {
      return { ignored: 'that does not look like the redirect address' };
    }
    const error = params.get('error');
    if (error) return { error };
    const pastedState = params.get('state');
    if (pastedState !== null && pastedState !== state)
      return { ignored: 'that address belongs to another authorization attempt (state differs)' };
    const code = params.get('code');
    return code ? { code } : { ignored: 'no code= in that address' };
  }
  return { code: text.includes('%') ? decodeURIComponent(text) : text };
}

/**
 * `litekeep auth google`: the OAuth installed-app flow with PKCE and a loopback redirect, plus a
 * paste-the-code fallback for machines without a browser. Writes an `authorized_user` credentials file.
 */
export async function authorizeGoogle(options: GoogleAuthorizeOptions): Promise<GoogleAuthorizeResult> {
  const secrets =
    options.clientId && options.clientSecret
      ? { clientId: options.clientId, clientSecret: options.clientSecret }
      : options.clientSecretsPath
        ? await readClientSecrets(options.clientSecretsPath)
        : undefined;
  if (!secrets)
    throw new GoogleAuthFlowError(
      'No OAuth client given: pass the "Desktop app" client JSON (--client-secrets) or --client-id and --client-secret.',
    );
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const state = randomBytes(16).toString('hex');

  let settle!: { resolve: (a: CodeArrival) => void; reject: (e: Error) => void };
  const arrival = new Promise<CodeArrival>((resolve, reject) => (settle = { resolve, reject }));
  // It may settle before it is awaited (a fast browser, a timeout): keep Node from calling that unhandled.
  arrival.catch(() => undefined);

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const params = new URL(req.url ?? '/', 'http://127.0.0.1/').searchParams;
    const error = params.get('error');
    const code = params.get('code');
    if (!error && !code) return page(res, 404, 'Not found.');
    if (params.get('state') !== state) {
      // Possibly a forged request from another page: refuse it and keep waiting for the real one.
      return page(res, 400, 'This response belongs to another authorization attempt; it was ignored.');
    }
    if (error) {
      page(res, 400, `Authorization failed: ${error}. Return to the terminal.`);
      return settle.reject(
        new GoogleAuthFlowError(
          `Google authorization was not granted (${error}): run \`litekeep auth google\` again and allow access.`,
        ),
      );
    }
    page(res, 200, 'litekeep is authorized for Google Drive. You can close this tab.');
    settle.resolve({ code: code!, via: 'loopback' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const redirectUri = `http://127.0.0.1:${port}`;

  const rl = options.input ? createInterface({ input: options.input, terminal: false }) : undefined;
  rl?.on('line', (line) => {
    const parsed = parsePasted(line, state);
    if (parsed.error)
      settle.reject(
        new GoogleAuthFlowError(
          `Google authorization was not granted (${parsed.error}): run \`litekeep auth google\` again and allow access.`,
        ),
      );
    else if (parsed.code) settle.resolve({ code: parsed.code, via: 'pasted' });
    else if (parsed.ignored) log(`Ignored: ${parsed.ignored}. Paste the code or the full address again.`);
  });

  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  const timer = setTimeout(
    () =>
      settle.reject(
        new GoogleAuthFlowError(
          `No authorization arrived within ${Math.round(timeoutMs / 1000)} s: run \`litekeep auth google\` again and open the URL it prints.`,
        ),
      ),
    timeoutMs,
  );
  const onAbort = () => settle.reject(new GoogleAuthFlowError('Authorization cancelled.'));
  options.signal?.addEventListener('abort', onAbort, { once: true });

  try {
    const client = new OAuth2Client({
      clientId: secrets.clientId,
      clientSecret: secrets.clientSecret,
      redirectUri,
      endpoints: tokenEndpoints(options.endpoints),
    });
    const { codeVerifier, codeChallenge } = await client.generateCodeVerifierAsync();
    const url = client.generateAuthUrl({
      access_type: 'offline',
      // Without consent Google omits the refresh token when the user authorized this client before.
      prompt: 'consent',
      scope: [DRIVE_FILE_SCOPE],
      state,
      code_challenge: codeChallenge,
      code_challenge_method: CodeChallengeMethod.S256,
    });
    log('Open this URL in a browser to let litekeep use Google Drive (only files litekeep creates):');
    log(`  ${url}`);
    log(`Waiting for the browser to return to ${redirectUri} ...`);
    if (options.input)
      log(
        'No browser on this machine? Open the URL anywhere, allow access, then paste here the address the browser ends up on (an error page is fine) or the code, and press Enter.',
      );
    const opener = options.openBrowser ?? true;
    if (typeof opener === 'function') {
      Promise.resolve()
        .then(() => opener(url))
        .catch((err: unknown) => log(`Could not open a browser (${String(err)}); open the URL yourself.`));
    } else if (opener) {
      await tryOpenBrowser(url);
    }

    const { code, via } = await arrival;
    let tokens;
    try {
      ({ tokens } = await client.getToken({ code, codeVerifier }));
    } catch (err) {
      const data = (err as { response?: { data?: { error?: string; error_description?: string } } }).response
        ?.data;
      const detail = data?.error
        ? `${data.error}${data.error_description ? `: ${data.error_description}` : ''}`
        : (err as Error).message;
      throw new GoogleAuthFlowError(
        `Google did not accept the authorization code (${detail}): run \`litekeep auth google\` again and use the newest code.`,
        { cause: err },
      );
    }
    if (!tokens.refresh_token)
      throw new GoogleAuthFlowError(
        'Google returned no refresh token: remove litekeep at https://myaccount.google.com/permissions and run `litekeep auth google` again.',
      );
    const credentials = {
      type: 'authorized_user',
      client_id: secrets.clientId,
      client_secret: secrets.clientSecret,
      refresh_token: tokens.refresh_token,
    };
    await writeFileAtomic(options.credentialsPath, JSON.stringify(credentials, null, 2) + '\n', 0o600);
    return { credentialsPath: options.credentialsPath, scope: tokens.scope ?? DRIVE_FILE_SCOPE, via };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    rl?.close();
    server.closeAllConnections();
    server.close();
  }
}
