import { capabilitySegments, splitCredentials, urlCredentials } from './http.js';
import { buildMessage, isFailureLike, renderPlain } from './message.js';
import type { HttpRequestSpec, PingOptions, RunEvent } from './types.js';

/**
 * healthchecks.io endpoints: `/start`, the bare URL for success, `/fail`. A partial run (local backup kept,
 * off-site failed) is a failure to the dead-man check: someone should look. A test goes to `/log`, which
 * healthchecks records without changing the check's state, so testing never hides a missed backup.
 */
export function pingSuffix(event: RunEvent): string {
  if (event.kind === 'start') return '/start';
  if (event.kind === 'test') return '/log';
  return isFailureLike(event) ? '/fail' : '';
}

/** Pure: GET by default; POST carries the plain-text summary, which healthchecks shows in its log. */
export function buildPingRequest(
  event: RunEvent,
  ping: PingOptions,
  options: { version?: string; timeZone?: string } = {},
): HttpRequestSpec {
  const { url: base, authorization } = splitCredentials(ping.url, 'ping url');
  const url = new URL(base);
  url.pathname = url.pathname.replace(/\/+$/, '') + pingSuffix(event);
  const headers: Record<string, string> = {};
  if (options.version) headers['User-Agent'] = `litekeep/${options.version}`;
  if (authorization) headers.Authorization = authorization;
  if ((ping.method ?? 'GET') === 'GET') return { url: url.href, method: 'GET', headers };
  headers['Content-Type'] = 'text/plain; charset=utf-8';
  return {
    url: url.href,
    method: 'POST',
    headers,
    body: renderPlain(buildMessage(event, { timeZone: options.timeZone })),
  };
}

export function pingSecrets(ping: PingOptions): string[] {
  return [...urlCredentials(ping.url), ...capabilitySegments(ping.url)];
}
