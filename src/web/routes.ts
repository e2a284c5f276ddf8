import type http from 'node:http';
import { sendJson, type LogSink, type RouteHandler } from '../scheduler/index.js';
import { oneLine } from '../util/errors.js';
import { ICON_SVG, PAGE_CSS, PAGE_JS } from './assets.js';
import { collectStatus, type StatusSource } from './collect.js';
import type { StatusDocument } from './document.js';
import { ASSET_PATHS, renderPage } from './render.js';

/** What "back up now" found: a run started, one was already going, or the daemon is stopping. */
export type BackupNowOutcome = 'started' | 'running' | 'stopping';

export interface StatusPageOptions {
  source: StatusSource;
  /** Starts a run of every database; given only with http.allowActions and a token. */
  backupNow?: () => BackupNowOutcome;
  logger?: LogSink;
}

const ASSETS: Record<string, { type: string; body: string }> = {
  [ASSET_PATHS.css]: { type: 'text/css; charset=utf-8', body: PAGE_CSS },
  [ASSET_PATHS.js]: { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
  [ASSET_PATHS.icon]: { type: 'image/svg+xml', body: ICON_SVG },
};

const PAGES = new Set(['/', '/api/status', ...Object.keys(ASSETS)]);

function send(
  res: http.ServerResponse,
  code: number,
  type: string,
  body: string,
  head: boolean,
  extra: Record<string, string> = {},
): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(head ? undefined : body);
}

/**
 * The status page (`/`), its data as JSON (`/api/status`), the files the page loads, and — only when an
 * action is configured — `POST /api/backup`. Reading changes nothing. Requests that arrive while the activity
 * log is being read share that one reading, so a flood of views costs one reading at a time.
 */
export function statusPageRoutes(options: StatusPageOptions): RouteHandler {
  let reading: Promise<{ doc: StatusDocument; ms: number }> | undefined;
  const read = () => {
    reading ??= (async () => {
      const started = performance.now();
      try {
        const doc = await collectStatus(options.source);
        return { doc, ms: performance.now() - started };
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  };

  return async (req, res, { pathname, head, authorized }) => {
    if (pathname === '/api/backup') return backupNow(req, res, authorized, options);
    if (!PAGES.has(pathname)) return false;
    if (req.method !== 'GET' && !head) {
      sendJson(res, 405, { error: `method ${req.method} not allowed: use GET` }, false, {
        allow: 'GET, HEAD',
      });
      return true;
    }
    const asset = ASSETS[pathname];
    if (asset) {
      send(res, 200, asset.type, asset.body, head);
      return true;
    }
    const { doc, ms } = await read();
    if (pathname === '/api/status') {
      sendJson(res, 200, doc, head, { 'server-timing': `collect;dur=${ms.toFixed(1)}` });
      return true;
    }
    const started = performance.now();
    const page = renderPage(doc);
    const renderMs = performance.now() - started;
    send(res, 200, 'text/html; charset=utf-8', page, head, {
      'server-timing': `collect;dur=${ms.toFixed(1)}, render;dur=${renderMs.toFixed(1)}`,
    });
    return true;
  };
}

function backupNow(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  authorized: boolean,
  options: StatusPageOptions,
): boolean {
  // Without http.allowActions and a token the endpoint does not exist: the server answers 404.
  if (!options.backupNow) return false;
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: `method ${req.method} not allowed: use POST` }, req.method === 'HEAD', {
      allow: 'POST',
    });
    return true;
  }
  if (!authorized) {
    // Bearer alone: a Basic challenge would make a browser's fetch pop up a password dialog.
    sendJson(
      res,
      401,
      { error: 'back up now needs the token: send Authorization: Bearer <http token>' },
      false,
      { 'www-authenticate': 'Bearer realm="litekeep"' },
    );
    return true;
  }
  let outcome: BackupNowOutcome;
  try {
    outcome = options.backupNow();
  } catch (error) {
    sendJson(res, 500, { error: `could not start a backup: ${oneLine(error)}` }, false);
    return true;
  }
  options.logger?.info({ remote: req.socket.remoteAddress, outcome }, `back up now asked for: ${outcome}`);
  if (outcome === 'started') {
    sendJson(
      res,
      202,
      {
        started: true,
        message: 'Backup started: every database is backed up now; the page shows the run when it is done.',
      },
      false,
    );
  } else if (outcome === 'running') {
    sendJson(
      res,
      409,
      { started: false, error: 'a backup is running already: wait for it to finish' },
      false,
    );
  } else {
    sendJson(res, 503, { started: false, error: 'the daemon is stopping and starts no backup' }, false);
  }
  return true;
}
