import { redactUrlsInText } from '../util/redact.js';
import { CONFIG_LEAVES, envNamesOf, type ResolvedConfig } from './load.js';

export interface ConfigEntry {
  key: string;
  value: unknown;
  source: string;
  env: string[];
  doc: string;
}

const REDACTED = '***';

function redactValue(value: unknown): unknown {
  if (value === undefined) return undefined;
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.fromEntries(Object.keys(value).map((k) => [k, REDACTED]));
  }
  return REDACTED;
}

/** Every setting with its value (secrets redacted) and where it came from: the body of `litekeep config`. */
export function describeConfig(resolved: ResolvedConfig): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  for (const leaf of CONFIG_LEAVES) {
    let value: unknown = leaf.path
      .split('.')
      .reduce<unknown>(
        (node, part) => (node as Record<string, unknown> | undefined)?.[part],
        resolved.config,
      );
    if (leaf.setting.secret) value = redactValue(value);
    else if (leaf.path === 'destinations' && Array.isArray(value)) value = value.map(redactDestination);
    else if (typeof value === 'string') value = redactUrlsInText(value);
    entries.push({
      key: leaf.path,
      value,
      source: resolved.sources[leaf.path] ?? 'unset',
      env: envNamesOf(leaf.path),
      doc: leaf.setting.doc,
    });
  }
  return entries;
}

const SECRET_FIELD = /(secret|password|token|passphrase|key)$/i;

function redactDestination(entry: unknown): unknown {
  if (!entry || typeof entry !== 'object') return entry;
  return Object.fromEntries(
    Object.entries(entry as Record<string, unknown>).map(([k, v]) => [
      k,
      SECRET_FIELD.test(k) && k !== 'keyPrefix' ? REDACTED : typeof v === 'string' ? redactUrlsInText(v) : v,
    ]),
  );
}
