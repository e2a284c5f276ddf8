import { redactUrl } from '../util/redact.js';

/**
 * HTTP header values must be Latin-1 and free of line breaks; ntfy (and most servers) decode RFC 2047
 * encoded words, so anything beyond printable ASCII is sent as `=?UTF-8?B?...?=`.
 */
export function headerSafe(value: string): string {
  // eslint-disable-next-line no-control-regex
  const flat = value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (/^[\x20-\x7e]*$/.test(flat)) return flat;
  return `=?UTF-8?B?${Buffer.from(flat, 'utf8').toString('base64')}?=`;
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

/**
 * fetch refuses URLs that carry `user:pass@`; such credentials move into an Authorization header instead.
 * Errors name the URL only in redacted form.
 */
export function splitCredentials(url: string, what: string): { url: string; authorization?: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${what} is not a valid URL: ${redactUrl(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`${what} must be an http(s) URL: ${redactUrl(url)}`);
  }
  if (!parsed.username && !parsed.password) return { url: parsed.href };
  const authorization = basicAuth(safeDecode(parsed.username), safeDecode(parsed.password));
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.href, authorization };
}

/** Credentials embedded in a URL, as they might be echoed back in an error, raw or as the Basic header. */
export function urlCredentials(url: string): string[] {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return [];
    const user = safeDecode(parsed.username);
    const password = safeDecode(parsed.password);
    return [
      parsed.username,
      user,
      parsed.password,
      password,
      basicAuth(user, password).slice('Basic '.length),
    ].filter((v) => v !== '');
  } catch {
    return [];
  }
}

const SENSITIVE_QUERY_KEY = /token|key|secret|pass|pwd|sig|auth|credential|session/i;

/**
 * Long path segments and query values of a capability URL (UUIDs, webhook tokens) are secrets in their own
 * right: a server may echo them without the rest of the URL, where URL-based redaction cannot see them.
 */
export function capabilitySegments(url: string): string[] {
  try {
    const parsed = new URL(url);
    const segments = parsed.pathname.split('/').filter((s) => s.length >= 8);
    const values = [...parsed.searchParams]
      .filter(([key, value]) => value.length >= 8 || (value !== '' && SENSITIVE_QUERY_KEY.test(key)))
      .map(([, value]) => value);
    return [...segments.flatMap((s) => [s, safeDecode(s)]), ...values];
  } catch {
    return [];
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
