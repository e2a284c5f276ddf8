import os from 'node:os';
import { VERSION } from '../version.js';
import { redactCapabilityUrl, redactSecrets } from '../util/redact.js';
import { isFailureLike, oneLineError } from './message.js';
import { buildNtfyRequest, ntfySecrets, ntfyTopicUrl } from './ntfy.js';
import { buildPingRequest, pingSecrets } from './ping.js';
import { deliver, report } from './send.js';
import type {
  ChannelName,
  HttpRequestSpec,
  NotificationAttempt,
  NotificationResult,
  NotifyHooks,
  NotifyOptions,
  NotifyWhen,
  RunEvent,
} from './types.js';
import { buildWebhookRequest, webhookSecrets } from './webhook.js';

interface Channel {
  name: ChannelName;
  on: NotifyWhen;
  target: string;
  secrets: string[];
  /** Whether this channel hears about this kind of event at all, before `on` is applied. */
  accepts(event: RunEvent): boolean;
  build(event: RunEvent): HttpRequestSpec;
}

/** The configured channels, in a stable order: ntfy, webhook, ping. */
function channelsOf(options: NotifyOptions): Channel[] {
  const common = { version: options.version ?? VERSION, timeZone: options.timeZone };
  const channels: Channel[] = [];
  const { ntfy, webhook, ping } = options;
  if (ntfy) {
    channels.push({
      name: 'ntfy',
      on: ntfy.on ?? 'always',
      target: redactCapabilityUrl(ntfyTopicUrl(ntfy)),
      secrets: ntfySecrets(ntfy),
      accepts: (e) => e.kind !== 'start',
      build: (e) => buildNtfyRequest(e, ntfy, common),
    });
  }
  if (webhook) {
    channels.push({
      name: 'webhook',
      on: webhook.on ?? 'always',
      target: redactCapabilityUrl(webhook.url),
      secrets: webhookSecrets(webhook),
      accepts: (e) => e.kind !== 'start',
      build: (e) => buildWebhookRequest(e, webhook, common),
    });
  }
  if (ping) {
    channels.push({
      name: 'ping',
      on: ping.on ?? 'always',
      target: redactCapabilityUrl(ping.url),
      secrets: pingSecrets(ping),
      accepts: () => true,
      build: (e) => buildPingRequest(e, ping, common),
    });
  }
  return channels;
}

function wants(on: NotifyWhen, event: RunEvent): boolean {
  if (event.kind === 'test') return true;
  if (on === 'never') return false;
  return on === 'always' || isFailureLike(event);
}

async function send(
  channel: Channel,
  event: RunEvent,
  options: NotifyOptions,
  hooks: NotifyHooks,
): Promise<NotificationResult> {
  let request: HttpRequestSpec;
  try {
    request = channel.build(event);
  } catch (error) {
    // A configuration problem (bad URL, no topic): reported like a failed try so it reaches the catalog.
    const message = oneLineError(
      redactSecrets(error instanceof Error ? error.message : String(error), channel.secrets),
    );
    const attempt: NotificationAttempt = {
      channel: channel.name,
      event: event.kind,
      status: 'failed',
      error: message,
      attempt: 1,
      time: new Date(),
      target: channel.target,
    };
    report(hooks.onAttempt, attempt);
    return {
      channel: channel.name,
      event: event.kind,
      status: 'failed',
      attempts: 1,
      error: message,
      target: channel.target,
      attemptLog: [attempt],
    };
  }
  return deliver(request, {
    channel: channel.name,
    event: event.kind,
    target: channel.target,
    secrets: channel.secrets,
    timeoutMs: options.timeoutMs,
    attempts: options.attempts,
    backoffMs: options.backoffMs,
    onAttempt: hooks.onAttempt,
  });
}

/**
 * Sends `event` to every configured channel that wants it, in parallel, and resolves when all are done.
 * Never rejects: a channel that could not be reached comes back with `status: 'failed'` (exit code 3 for
 * the caller). `start` events go to the ping only. Channels excluded by their `on` come back `skipped`.
 */
export async function notify(
  event: RunEvent,
  options: NotifyOptions,
  hooks: NotifyHooks = {},
): Promise<NotificationResult[]> {
  const channels = channelsOf(options).filter((c) => c.accepts(event));
  return Promise.all(
    channels.map(async (channel): Promise<NotificationResult> => {
      if (!wants(channel.on, event)) {
        return {
          channel: channel.name,
          event: event.kind,
          status: 'skipped',
          attempts: 0,
          target: channel.target,
          attemptLog: [],
        };
      }
      return send(channel, event, options, hooks);
    }),
  );
}

/**
 * `litekeep notify test`: one test message to every configured channel, whatever its `on` says. The ping
 * goes to `/log`, so the check's state is left alone.
 */
export async function notifyTest(
  options: NotifyOptions,
  hooks: NotifyHooks = {},
  event: Partial<RunEvent> = {},
): Promise<NotificationResult[]> {
  return notify(
    { database: 'litekeep', host: os.hostname(), time: new Date(), ...event, kind: 'test' },
    options,
    hooks,
  );
}

/** True when any channel failed: the caller's cue for exit code 3. */
export function anyFailed(results: readonly NotificationResult[]): boolean {
  return results.some((r) => r.status === 'failed');
}
