import { parseDuration } from '../util/duration.js';

/**
 * Building blocks of the config schema: a setting knows how to read a raw value (from YAML, JSON, an env string
 * or a flag), its default, whether it is a secret, and which legacy env names also set it.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly exitCode = 2;
}

export interface Setting<T> {
  readonly kind: 'setting';
  /** Reads a raw value; throws a string describing the accepted form when the value does not fit. */
  readonly parse: (raw: unknown) => T;
  readonly defaultValue?: T;
  readonly secret?: boolean;
  /** Env names, besides the LITEKEEP_ one derived from the path, that set this value (the seed's names). */
  readonly aliases?: readonly string[];
  /** Whether relative paths in a config file are resolved against the file's folder. */
  readonly isPath?: boolean;
  /** A duration, held in milliseconds (shown again as `26h`, not 93600000). */
  readonly isDuration?: boolean;
  readonly doc: string;
}

export interface Section {
  readonly kind: 'section';
  readonly fields: { readonly [key: string]: Setting<unknown> | Section };
}

export type Infer<S> =
  S extends Setting<infer T>
    ? T
    : S extends Section
      ? { -readonly [K in keyof S['fields']]: Infer<S['fields'][K]> }
      : never;

type SettingOptions<T> = {
  default?: T;
  secret?: boolean;
  aliases?: string[];
  doc: string;
};

export class InvalidValue extends Error {}

function setting<T>(parse: (raw: unknown) => T, options: SettingOptions<T>, isPath = false): Setting<T> {
  return {
    kind: 'setting',
    parse,
    defaultValue: options.default,
    secret: options.secret,
    aliases: options.aliases,
    isPath,
    doc: options.doc,
  };
}

export function section<F extends Section['fields']>(fields: F): { kind: 'section'; fields: F } {
  return { kind: 'section', fields };
}

// `undefined` in a default means "no default": the value stays unset unless a source sets it.
export function string(options: SettingOptions<string>): Setting<string | undefined> {
  return setting((raw) => {
    if (typeof raw === 'string' && raw.trim() !== '') return raw.trim();
    if (typeof raw === 'number') return String(raw);
    throw new InvalidValue('a non-empty string');
  }, options);
}

export function requiredString(options: SettingOptions<string> & { default: string }): Setting<string> {
  return string(options) as Setting<string>;
}

export function pathSetting(options: SettingOptions<string>): Setting<string | undefined> {
  return { ...string(options), isPath: true };
}

export function integer(
  options: SettingOptions<number> & { min?: number; max?: number },
): Setting<number | undefined> {
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = options;
  return setting((raw) => {
    const value = typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new InvalidValue(
        max === Number.MAX_SAFE_INTEGER ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`,
      );
    }
    return value;
  }, options);
}

export function boolean(options: SettingOptions<boolean> & { default: boolean }): Setting<boolean> {
  return setting((raw) => {
    if (typeof raw === 'boolean') return raw;
    if (typeof raw === 'string') {
      const v = raw.trim().toLowerCase();
      if (['true', 'yes', '1', 'on'].includes(v)) return true;
      if (['false', 'no', '0', 'off'].includes(v)) return false;
    }
    throw new InvalidValue('true or false');
  }, options);
}

export function oneOf<const V extends string>(
  values: readonly V[],
  options: SettingOptions<V> & { default: V },
): Setting<V> {
  return setting((raw) => {
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw.trim())) return raw.trim() as V;
    throw new InvalidValue(`one of ${values.join(', ')}`);
  }, options);
}

export function optionalOneOf<const V extends string>(
  values: readonly V[],
  options: SettingOptions<V>,
): Setting<V | undefined> {
  return setting((raw) => {
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw.trim())) return raw.trim() as V;
    throw new InvalidValue(`one of ${values.join(', ')}`);
  }, options);
}

/** A list from YAML/JSON, or a comma-separated string from env and flags. */
export function stringList(options: SettingOptions<string[]>): Setting<string[] | undefined> {
  return setting((raw) => {
    const items =
      typeof raw === 'string'
        ? raw.split(',')
        : Array.isArray(raw) && raw.every((x) => typeof x === 'string')
          ? (raw as string[])
          : undefined;
    if (!items) throw new InvalidValue('a list of strings (or a comma-separated string)');
    return items.map((s) => s.trim()).filter((s) => s !== '');
  }, options);
}

/** A string map from YAML/JSON, or a JSON object string from env and flags. */
export function stringMap(
  options: SettingOptions<Record<string, string>>,
): Setting<Record<string, string> | undefined> {
  return setting((raw) => {
    let value = raw;
    if (typeof raw === 'string') {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new InvalidValue('a map of strings (as JSON in env vars: {"Name":"value"})');
      }
    }
    if (
      typeof value !== 'object' ||
      value === null ||
      Array.isArray(value) ||
      !Object.values(value).every((v) => typeof v === 'string')
    ) {
      throw new InvalidValue('a map of strings (as JSON in env vars: {"Name":"value"})');
    }
    return { ...(value as Record<string, string>) };
  }, options);
}

/** `90s`, `30m`, `26h`, `7d`, `1w`, `1h30m`, `500ms` as milliseconds; undefined when it is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  try {
    return parseDuration(text);
  } catch {
    return undefined;
  }
}

export function duration(
  options: SettingOptions<string> & { default?: string },
): Setting<number | undefined> {
  const parse = (raw: unknown): number => {
    const ms = typeof raw === 'string' ? parseDurationMs(raw) : undefined;
    if (ms === undefined) throw new InvalidValue('a duration such as 90s, 30m, 26h, 7d or 1w');
    return ms;
  };
  return {
    ...setting(parse, {
      ...options,
      default: options.default === undefined ? undefined : parse(options.default),
    } as SettingOptions<number>),
    isDuration: true,
  };
}

/** A setting whose raw value is checked by a custom function (lists of objects, cron, zones). */
export function custom<T>(parse: (raw: unknown) => T, options: SettingOptions<T>): Setting<T> {
  return setting(parse, options);
}

export function isSetting(node: Setting<unknown> | Section): node is Setting<unknown> {
  return node.kind === 'setting';
}

/** `retention.daily` → `LITEKEEP_RETENTION_DAILY`; `timeZone` → `LITEKEEP_TIME_ZONE`. */
export function envNameFor(path: string): string {
  return (
    'LITEKEEP_' +
    path
      .split('.')
      .map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
      .join('_')
  );
}
