export type {
  ChannelName,
  EventKind,
  HttpRequestSpec,
  NotificationAttempt,
  NotificationResult,
  NotifyHooks,
  NotifyOptions,
  NotifyWhen,
  NtfyOptions,
  PingOptions,
  RunEvent,
  WebhookOptions,
} from './types.js';
export { anyFailed, notify, notifyTest } from './notify.js';
export { buildNtfyRequest, DEFAULT_NTFY_SERVER } from './ntfy.js';
export { buildWebhookPayload, buildWebhookRequest, type WebhookPayload } from './webhook.js';
export { buildPingRequest, pingSuffix } from './ping.js';
export {
  buildMessage,
  eventStatus,
  formatBytes,
  formatDuration,
  isFailureLike,
  isPartial,
  oneLineError,
  outcomeSummary,
  renderMarkdown,
  renderPlain,
  type EventStatus,
  type Message,
} from './message.js';
export { DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_MS, DEFAULT_TIMEOUT_MS } from './send.js';
