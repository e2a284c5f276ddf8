import fs from 'node:fs';
import type { LitekeepConfig } from '../config/index.js';
import { EXIT, LitekeepError } from '../util/errors.js';

/** Who may do what on the daemon's HTTP server, from `http.*` and `--allow-remote`. */
export interface HttpAccess {
  listen?: string;
  allowRemote: boolean;
  /** The shared secret; only ever compared, never printed, logged or written anywhere. */
  token?: string;
  /** Whether `POST /api/backup` exists. */
  allowActions: boolean;
}

/** Short tokens can be guessed over the network; 16 characters of `openssl rand -hex 32` cannot. */
export const MIN_TOKEN_LENGTH = 16;

const HOW = `LITEKEEP_HTTP_TOKEN or http.tokenFile to ${MIN_TOKEN_LENGTH} or more random characters (e.g. from openssl rand -hex 32)`;

function usage(message: string): LitekeepError {
  return new LitekeepError(message, { exitCode: EXIT.usage, stage: 'prepare' });
}

function readTokenFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw usage(
      `cannot read http.tokenFile ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'}); check the path`,
    );
  }
  return text.split(/\r?\n/)[0].trim();
}

/**
 * Reads and checks the HTTP settings before the daemon starts: exit 2 with one line naming the fix for a token
 * that is missing where it is needed, too short, or given twice. The token's value is never part of a message.
 */
export function httpAccessOf(
  http: LitekeepConfig['http'],
  options: { listen?: string; allowRemote?: boolean } = {},
): HttpAccess {
  if (http.token && http.tokenFile) {
    throw usage('http.token and http.tokenFile are both set: keep one of them');
  }
  const token = http.tokenFile ? readTokenFile(http.tokenFile) : http.token;
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw usage(`the http token is shorter than ${MIN_TOKEN_LENGTH} characters: set ${HOW}`);
  }
  if (token !== undefined && /\s/.test(token)) {
    throw usage(
      `the http token contains white space, which an Authorization header cannot carry: set ${HOW}`,
    );
  }
  const allowRemote = options.allowRemote === true;
  if (allowRemote && !token) {
    throw usage(
      `refusing --allow-remote without a token: anyone on the network could read the status; set ${HOW}`,
    );
  }
  if (http.allowActions && !token) {
    throw usage(
      `http.allowActions needs a token for "back up now": set ${HOW}, or turn http.allowActions off`,
    );
  }
  return { listen: options.listen ?? http.listen, allowRemote, token, allowActions: http.allowActions };
}
