import crypto from 'node:crypto';

/**
 * OpenSSH's known_hosts format (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"), for checking a server's host key the way
 * `ssh` does. Pure: the file's text in, a verdict out.
 */

export interface KnownHostLine {
  marker?: '@revoked' | '@cert-authority';
  /** The host patterns as written: `host`, `[host]:port`, wildcards, `!negations`, or one `|1|salt|hash`. */
  patterns: string[];
  keyType: string;
  /** The public key blob, base64, as on the line. */
  key: string;
}

export function parseKnownHosts(text: string): KnownHostLine[] {
  const out: KnownHostLine[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostLine['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as typeof marker;
    else if (fields[0].startsWith('@')) continue;
    if (fields.length < 3) continue;
    out.push({ marker, patterns: fields[0].split(','), keyType: fields[1], key: fields[2] });
  }
  return out;
}

/** How a host is named in known_hosts: `host` on port 22, `[host]:port` on any other. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function wildcardMatch(pattern: string, text: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
    'i',
  );
  return re.test(text);
}

/** Whether one line's patterns name this host: a hashed name, or patterns with negation winning. */
function lineNamesHost(patterns: string[], name: string): boolean {
  let matched = false;
  for (const pattern of patterns) {
    if (pattern.startsWith('|1|')) {
      const [, , salt, hash] = pattern.split('|');
      if (!salt || !hash) continue;
      const mac = crypto.createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
      if (mac === hash) matched = true;
      continue;
    }
    const negated = pattern.startsWith('!');
    if (wildcardMatch(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** `SHA256:…`, as `ssh-keygen -l` and ssh's prompts show a key. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${crypto.createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type inside an SSH public key blob (its first string), e.g. `ssh-ed25519`. */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const length = keyBlob.readUInt32BE(0);
  return keyBlob.subarray(4, 4 + length).toString('latin1');
}

export type HostKeyVerdict =
  | { status: 'known' }
  | { status: 'unknown' }
  | { status: 'changed'; knownTypes: string[] }
  | { status: 'revoked' };

/**
 * ssh's rule: a revoked key is refused; a key listed for this host is accepted; a host listed with other keys
 * of the same type has changed its key (or someone is in the middle); otherwise the host is unknown.
 */
export function checkHostKey(
  lines: KnownHostLine[],
  host: string,
  port: number,
  keyBlob: Buffer,
): HostKeyVerdict {
  const key = keyBlob.toString('base64');
  const type = keyTypeOf(keyBlob);
  if (lines.some((l) => l.marker === '@revoked' && l.key === key)) return { status: 'revoked' };
  const names = [knownHostName(host, port)];
  const forHost = lines.filter(
    (l) => l.marker === undefined && names.some((n) => lineNamesHost(l.patterns, n)),
  );
  if (forHost.some((l) => l.key === key)) return { status: 'known' };
  const sameType = forHost.filter((l) => l.keyType === type);
  if (sameType.length) return { status: 'changed', knownTypes: [...new Set(sameType.map((l) => l.keyType))] };
  return { status: 'unknown' };
}

/** The key types known_hosts has for this host, so that the handshake can ask for one of those first. */
export function knownKeyTypes(lines: KnownHostLine[], host: string, port: number): string[] {
  const name = knownHostName(host, port);
  return [
    ...new Set(
      lines.filter((l) => l.marker === undefined && lineNamesHost(l.patterns, name)).map((l) => l.keyType),
    ),
  ];
}
