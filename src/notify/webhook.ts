import { capabilitySegments, splitCredentials, urlCredentials } from './http.js';
import { buildMessage, eventStatus, renderPlain } from './message.js';
import type { HttpRequestSpec, RunEvent, WebhookOptions } from './types.js';

/** The JSON document a webhook receives; fields that do not apply to the event are absent. */
export interface WebhookPayload extends Omit<RunEvent, 'kind' | 'time'> {
  event: RunEvent['kind'];
  status: 'started' | 'ok' | 'partial' | 'failed' | 'test';
  /** ISO-8601, UTC. */
  time: string;
  version: string;
  title: string;
  /** The same summary a person gets by ntfy, as plain text (Slack-style receivers show `text`). */
  text: string;
}

export function buildWebhookPayload(
  event: RunEvent,
  options: { version: string; timeZone?: string },
): WebhookPayload {
  const message = buildMessage(event, { timeZone: options.timeZone });
  const status = eventStatus(event);
  return {
    event: event.kind,
    status,
    database: event.database,
    host: event.host,
    time: event.time.toISOString(),
    version: options.version,
    title: message.title,
    text: renderPlain(message),
    file: event.file,
    bytes: event.bytes,
    path: event.path,
    link: event.link,
    rotated: event.rotated,
    removed: event.removed,
    durationMs: event.durationMs,
    sha256: event.sha256,
    error: event.error,
    stage: event.stage,
    succeeded: event.succeeded,
    failed: event.failed,
    partial: event.kind === 'success' ? status === 'partial' : undefined,
  };
}

/** Pure: one POST of one JSON document. Configured headers win over ours. */
export function buildWebhookRequest(
  event: RunEvent,
  webhook: WebhookOptions,
  options: { version: string; timeZone?: string },
): HttpRequestSpec {
  const { url, authorization } = splitCredentials(webhook.url, 'webhook url');
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    'User-Agent': `litekeep/${options.version}`,
  };
  if (authorization) headers.Authorization = authorization;
  for (const [name, value] of Object.entries(webhook.headers ?? {})) {
    for (const existing of Object.keys(headers)) {
      if (existing.toLowerCase() === name.toLowerCase()) delete headers[existing];
    }
    headers[name] = value;
  }
  return { url, method: 'POST', headers, body: JSON.stringify(buildWebhookPayload(event, options)) };
}

const SENSITIVE_HEADER = /auth|token|key|secret|pass|sig|cookie|session/i;

export function webhookSecrets(webhook: WebhookOptions): string[] {
  const headerValues = Object.entries(webhook.headers ?? {})
    .filter(([name, value]) => SENSITIVE_HEADER.test(name) || value.length >= 8)
    .flatMap(([, value]) => [value, value.replace(/^(Bearer|Basic|Token)\s+/i, '')]);
  return [...urlCredentials(webhook.url), ...capabilitySegments(webhook.url), ...headerValues].filter(
    (s) => s.length > 0,
  );
}
