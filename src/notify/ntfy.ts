import { capabilitySegments, headerSafe, splitCredentials, urlCredentials, basicAuth } from './http.js';
import { buildMessage, eventStatus, isFailureLike, renderMarkdown, type EventStatus } from './message.js';
import type { HttpRequestSpec, NtfyOptions, RunEvent } from './types.js';

export const DEFAULT_NTFY_SERVER = 'https://ntfy.sh';

/** ntfy turns tags that are emoji short codes into emoji in front of the title. */
const STATUS_TAG: Record<EventStatus, string> = {
  ok: 'white_check_mark',
  partial: 'warning',
  failed: 'rotating_light',
  started: 'hourglass_flowing_sand',
  test: 'test_tube',
};

export function ntfyTopicUrl(ntfy: NtfyOptions): string {
  return `${(ntfy.server ?? DEFAULT_NTFY_SERVER).replace(/\/+$/, '')}/${encodeURIComponent(ntfy.topic)}`;
}

/** Pure: the publish request for one event (https://docs.ntfy.sh/publish/). */
export function buildNtfyRequest(
  event: RunEvent,
  ntfy: NtfyOptions,
  options: { timeZone?: string; version?: string } = {},
): HttpRequestSpec {
  if (!ntfy.topic) throw new Error('ntfy topic is not set');
  const { url, authorization: urlAuth } = splitCredentials(ntfyTopicUrl(ntfy), 'ntfy server');
  const message = buildMessage(event, { timeZone: options.timeZone });
  const failure = isFailureLike(event);
  const tags = [...new Set([STATUS_TAG[eventStatus(event)], ...(ntfy.tags ?? [])])]
    .map((t) => t.replace(/,/g, ' ').trim())
    .filter((t) => t !== '');

  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    Title: headerSafe(message.title),
    Priority: headerSafe(failure ? (ntfy.failurePriority ?? 'high') : (ntfy.priority ?? 'default')),
    Tags: headerSafe(tags.join(',')),
    Markdown: 'yes',
  };
  if (options.version) headers['User-Agent'] = `litekeep/${headerSafe(options.version)}`;
  const click = clickUrl(event.link);
  if (click) headers.Click = click;
  const authorization = ntfy.token
    ? `Bearer ${headerSafe(ntfy.token)}`
    : ntfy.user !== undefined || ntfy.password !== undefined
      ? basicAuth(ntfy.user ?? '', ntfy.password ?? '')
      : urlAuth;
  if (authorization) headers.Authorization = authorization;
  return { url, method: 'POST', headers, body: renderMarkdown(message) };
}

/** `URL.href` percent-encodes anything non-ASCII, so the header stays valid; other schemes are dropped. */
function clickUrl(link: string | undefined): string | undefined {
  if (!link) return undefined;
  try {
    const parsed = new URL(link);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : undefined;
  } catch {
    return undefined;
  }
}

export function ntfySecrets(ntfy: NtfyOptions): string[] {
  const url = ntfyTopicUrl(ntfy);
  const secrets = [ntfy.token, ntfy.password, ...urlCredentials(url), ...capabilitySegments(url)];
  if (ntfy.user !== undefined || ntfy.password !== undefined) {
    secrets.push(basicAuth(ntfy.user ?? '', ntfy.password ?? '').slice('Basic '.length));
  }
  return secrets.filter((s): s is string => !!s);
}
