/**
 * Keeps credentials out of everything litekeep prints, logs or records. Over-redaction is preferred to a
 * leak: a query key that merely looks sensitive is masked too.
 */

const MASK = '***';

/** Query keys whose values are credentials (S3 presigned `X-Amz-Signature`, `access_token`, `apikey`, ...). */
const SENSITIVE_KEY = /token|key|secret|pass(word|wd)?|pwd|sig(nature)?|auth|credential|session/i;

const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

function decodeKey(key: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key;
  }
}

/**
 * `https://user:pass@host/p?token=abc&x=1` → `https://***@host/p?token=***&x=1`. Works on the string as
 * given (no URL normalisation), so it is safe on malformed input too.
 */
export function redactUrl(url: string): string {
  let out = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#\s]*)@/i, `$1${MASK}@`);
  const q = out.indexOf('?');
  if (q === -1) return out;
  const hash = out.indexOf('#', q);
  const end = hash === -1 ? out.length : hash;
  const query = out
    .slice(q + 1, end)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq === -1) return pair;
      return SENSITIVE_KEY.test(decodeKey(pair.slice(0, eq))) ? `${pair.slice(0, eq)}=${MASK}` : pair;
    })
    .join('&');
  out = `${out.slice(0, q + 1)}${query}${out.slice(end)}`;
  return out;
}

/**
 * For URLs that are themselves the secret (a healthchecks UUID, a Slack/ntfy webhook path): only the origin
 * stays readable, which is what someone debugging a failed delivery needs.
 */
export function redactCapabilityUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const hasMore = parsed.pathname.length > 1 || parsed.search !== '' || parsed.hash !== '';
    return hasMore ? `${parsed.origin}/${MASK}` : parsed.origin;
  } catch {
    return MASK;
  }
}

/** Applies {@link redactUrl} to every URL found in free text (error messages quote URLs). */
export function redactUrlsInText(text: string): string {
  return text.replace(URL_IN_TEXT, (url) => redactUrl(url));
}

/**
 * Replaces each known secret value (and its URL-encoded form) with `***`, then redacts credentials in any
 * URL left in the text. Longer secrets go first so that a secret containing another is masked whole.
 */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  const values = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    values.add(secret);
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret) values.add(encoded);
  }
  let out = text;
  for (const value of [...values].sort((a, b) => b.length - a.length)) out = out.split(value).join(MASK);
  return redactUrlsInText(out);
}
