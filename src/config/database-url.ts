import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { redactUrlsInText } from '../util/redact.js';
import { ConfigError } from './settings.js';

/**
 * Turns the seed's `DATABASE_URL` forms into an absolute path:
 * - `sqlite:///relative/path.db` → relative to `baseDir` (SQLAlchemy: three slashes, then a relative path)
 * - `sqlite:////abs/path.db` → `/abs/path.db`
 * - `file:/abs/path.db`, `file:///abs/path.db`, `file:relative.db` (query strings are ignored)
 * - a plain path, relative to `baseDir`
 */
export function resolveDatabaseLocation(raw: string, baseDir: string, source: string): string {
  const value = raw.trim();
  const fail = (why: string): never => {
    // A mistaken URL may carry a password (postgres://user:secret@...): never echo it.
    throw new ConfigError(
      `malformed database location '${redactUrlsInText(value)}' from ${source}: ${why}; use sqlite:///relative/path.db, ` +
        `sqlite:////absolute/path.db, file:/absolute/path.db or a plain path`,
    );
  };
  if (value === '') fail('it is empty');
  if (/^sqlite(\+\w+)?:/i.test(value)) {
    const m = /^sqlite(?:\+\w+)?:\/\/\/(.*)$/i.exec(value);
    if (!m) fail('a sqlite URL needs three slashes after the scheme');
    const rest = decodeURIComponent(m![1].split('?')[0]);
    if (rest === '' || rest === ':memory:') fail('an in-memory database cannot be backed up');
    return rest.startsWith('/') ? path.normalize(rest) : path.resolve(baseDir, rest);
  }
  if (/^file:/i.test(value)) {
    const withoutQuery = value.split('?')[0];
    if (/^file:\/\//i.test(withoutQuery)) {
      try {
        return fileURLToPath(withoutQuery);
      } catch (error) {
        fail((error as Error).message);
      }
    }
    const rest = decodeURIComponent(withoutQuery.slice('file:'.length));
    if (rest === '' || rest === ':memory:') fail('an in-memory database cannot be backed up');
    return rest.startsWith('/') ? path.normalize(rest) : path.resolve(baseDir, rest);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    fail(`'${value.split(':')[0]}' is not a SQLite URL`);
  }
  return path.resolve(baseDir, value);
}
