import { redactSecrets } from '../util/redact.js';

/**
 * What rclone prints, made safe and short for one line of litekeep's output. Pure: no process, no file.
 */

const MASK = '***';

/** Names of settings and fields whose values are credentials, in rclone's configs, JSON bodies and env vars. */
const SECRET_NAME = /pass(word)?|token|secret|key|credential|auth|session|cookie|signature|sas_url/i;

/**
 * Masks credentials in rclone's output: the known secret values, then anything shaped like one — JSON fields
 * (`"access_token":"…"`), `name = value` / `name: value` / `name=value` settings, `Bearer`/`Basic` headers and
 * credentials in URLs. Over-redaction is preferred to a leak.
 */
export function redactRcloneOutput(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = redactSecrets(text, secrets);
  out = out.replace(/("([\w-]+)"\s*:\s*)"((?:[^"\\]|\\.)*)"/g, (whole, head: string, name: string) =>
    SECRET_NAME.test(name) ? `${head}"${MASK}"` : whole,
  );
  out = out.replace(
    // `name: value` needs the space after the colon: `keybase:backups` is a remote, not a setting.
    /\b([\w-]*(?:pass(?:word)?|token|secret|key|credential|sas_url)[\w-]*)(\s*=\s*|:\s+)([^\s,;&"'}]+)/gi,
    (_whole, name: string, sep: string) => `${name}${sep}${MASK}`,
  );
  out = out.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g, `$1 ${MASK}`);
  return out;
}

/** Values of environment variables that configure rclone with secrets (`RCLONE_CONFIG_<REMOTE>_PASS`, ...). */
export function secretsInEnvironment(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(env)
    .filter(([name, value]) => name.startsWith('RCLONE_') && SECRET_NAME.test(name) && value)
    .map(([, value]) => value as string);
}

/** Values of secret-looking keys in an rclone config file (INI), so that rclone echoing one cannot leak it. */
export function secretsInConfig(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\w-]+)\s*=\s*(.+?)\s*$/.exec(line);
    if (m && SECRET_NAME.test(m[1]) && m[2] !== '') {
      out.push(m[2]);
      // OAuth tokens are JSON: each token inside is a secret on its own.
      for (const t of m[2].matchAll(/"[\w-]*token[\w-]*"\s*:\s*"([^"]+)"/gi)) out.push(t[1]);
    }
  }
  return out;
}

const LOG_PREFIX = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d(?:\.\d+)? /;

/**
 * The line of rclone's stderr that says what went wrong: the last `Failed to …`, else the last ERROR or
 * CRITICAL line, else the last line; without its time stamp and level.
 */
export function rcloneErrorLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(LOG_PREFIX, '').trim())
    .filter((l) => l !== '');
  const pick =
    lines.findLast((l) => /^Failed to /.test(l)) ??
    lines.findLast((l) => /^(ERROR|CRITICAL)\s*:/.test(l)) ??
    lines.at(-1) ??
    'no message';
  const text = pick
    .replace(/^(ERROR|CRITICAL|NOTICE)\s*:\s*/, '')
    // `Failed to lsjson with 2 errors: last error was: …` says only which command, and litekeep says that.
    .replace(/^Failed to [\w-]+( with \d+ errors)?: (last error was: )?/, '');
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

export type RcloneFailureKind = 'not-configured' | 'auth' | 'unreachable' | 'not-found' | 'other';

/** What kind of failure rclone reported, from its message (rclone's exit codes do not tell these apart). */
export function classifyRcloneFailure(line: string): RcloneFailureKind {
  if (/didn't find section in config file|NewFs: didn't find|config file .* not found/i.test(line))
    return 'not-configured';
  if (
    /\b401\b|\b403\b|unauthori[sz]ed|forbidden|unable to authenticate|authentication failed|permission denied \(publickey|invalid_grant|invalid_client|token (has )?expired|couldn't fetch token|empty token|login failed|incorrect password|bad credentials/i.test(
      line,
    )
  )
    return 'auth';
  if (
    /connection refused|no such host|i\/o timeout|network is unreachable|connection reset|couldn't connect|dial tcp|EOF$|unexpected EOF|context deadline exceeded|TLS handshake|use of closed network connection|broken pipe/i.test(
      line,
    )
  )
    return 'unreachable';
  if (/directory not found|object not found|not found|doesn't exist|no such file/i.test(line))
    return 'not-found';
  return 'other';
}

/**
 * The remote's name in `remote:path` as rclone would look it up in its config, or undefined for a local path or
 * an on-the-fly backend (`:webdav,url=…:path`) that needs no config section.
 */
export function remoteName(remote: string): string | undefined {
  if (remote.startsWith(':')) return undefined;
  const m = /^([^:/\\,]+)(,[^:]*)?:/.exec(remote);
  return m ? m[1] : undefined;
}
