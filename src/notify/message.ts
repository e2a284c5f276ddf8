import { humanBytes } from '../util/fs.js';
import { formatZoned, systemTimeZone } from '../util/time.js';
import type { RunEvent } from './types.js';

export type EventStatus = 'started' | 'ok' | 'partial' | 'failed' | 'test';

/** A success that reports failures is partial even when the caller forgot the flag. */
export function isPartial(event: RunEvent): boolean {
  return event.kind === 'success' && (event.partial ?? (event.failed?.length ?? 0) > 0);
}

/** Failures and partial successes: what `on: failure` channels hear about. */
export function isFailureLike(event: RunEvent): boolean {
  return event.kind === 'failure' || isPartial(event);
}

export function eventStatus(event: RunEvent): EventStatus {
  switch (event.kind) {
    case 'start':
      return 'started';
    case 'failure':
      return 'failed';
    case 'test':
      return 'test';
    case 'success':
      return isPartial(event) ? 'partial' : 'ok';
  }
}

/** Binary units, one decimal: `1536` → `1.5 KiB`. */
export const formatBytes = humanBytes;

/** `850 ms`, `4.2 s`, `3 min 05 s`, `1 h 02 min`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return `${ms} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  if (totalSeconds < 3600) {
    return `${Math.floor(totalSeconds / 60)} min ${String(totalSeconds % 60).padStart(2, '0')} s`;
  }
  const totalMinutes = Math.round(totalSeconds / 60);
  return `${Math.floor(totalMinutes / 60)} h ${String(totalMinutes % 60).padStart(2, '0')} min`;
}

/** Errors reach people on a phone screen: first line only, whitespace collapsed, bounded. */
export function oneLineError(text: string, max = 300): string {
  const line = text.split(/\r?\n/)[0].replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** `local backup kept, Drive upload failed`. */
export function outcomeSummary(event: RunEvent): string | undefined {
  const parts = [...(event.succeeded ?? []), ...(event.failed ?? [])];
  return parts.length ? parts.join(', ') : undefined;
}

type Field = { label: string; value: string; style: 'text' | 'code' | 'link' };

export interface Message {
  title: string;
  intro: string;
  fields: Field[];
}

export interface MessageOptions {
  timeZone?: string;
}

/** What a person should read, independent of how a channel renders it. */
export function buildMessage(event: RunEvent, options: MessageOptions = {}): Message {
  const zone = options.timeZone ?? systemTimeZone();
  const when = `${formatZoned(event.time, zone)} ${zone}`;
  const status = eventStatus(event);
  const fields: Field[] = [];
  const add = (label: string, value: string | undefined, style: Field['style'] = 'text') => {
    if (value !== undefined && value !== '') fields.push({ label, value, style });
  };
  const outcome = outcomeSummary(event);

  switch (status) {
    case 'ok':
    case 'partial': {
      add('File', event.file, 'code');
      add('Size', event.bytes !== undefined ? formatBytes(event.bytes) : undefined);
      add('Local', event.path, 'code');
      add('Drive', event.link, 'link');
      if (event.rotated !== undefined) {
        const names = event.removed?.length ? `: ${event.removed.join(', ')}` : '';
        add('Rotated', `${event.rotated} old backup${event.rotated === 1 ? '' : 's'} removed${names}`);
      }
      for (const snap of event.snapshots ?? [])
        add(
          `Snapshot (${snap.destination})`,
          `${snap.id.slice(0, 12)}: ${formatBytes(snap.addedBytes)} added, dedup ${Math.round(snap.dedupRatio)}x`,
        );
      add('Duration', event.durationMs !== undefined ? formatDuration(event.durationMs) : undefined);
      if (status === 'partial') {
        add('Outcome', outcome);
        add('Error', event.error !== undefined ? oneLineError(event.error) : undefined, 'code');
      }
      return {
        title:
          status === 'ok'
            ? `Backup succeeded: ${event.database} (${event.host})`
            : `Backup partly failed: ${event.database} (${event.host})`,
        intro:
          status === 'ok'
            ? `Backup of ${event.database} on ${event.host} succeeded.`
            : `Backup of ${event.database} on ${event.host} succeeded, but not everything worked.`,
        fields,
      };
    }
    case 'failed':
      add('Error', oneLineError(event.error ?? 'unknown error'), 'code');
      add('Stage', event.stage);
      add('Time', when);
      add('Outcome', outcome);
      add('Duration', event.durationMs !== undefined ? formatDuration(event.durationMs) : undefined);
      return {
        title: `Backup FAILED: ${event.database} (${event.host})`,
        intro: `Backup of ${event.database} on ${event.host} failed${event.stage ? ` at stage ${event.stage}` : ''}.`,
        fields,
      };
    case 'started':
      add('Time', when);
      return {
        title: `Backup started: ${event.database} (${event.host})`,
        intro: `Backup of ${event.database} on ${event.host} started.`,
        fields,
      };
    case 'test':
      add('Time', when);
      return {
        title: `litekeep test notification (${event.host})`,
        intro: `This is a test message from litekeep on ${event.host}. If you can read it, this channel works.`,
        fields,
      };
  }
}

const escapeMarkdown = (text: string) => text.replace(/[\\`*_[\]<>|~#]/g, (c) => `\\${c}`);

function markdownValue(field: Field): string {
  switch (field.style) {
    case 'code':
      // A backtick would end the code span early; the message is for reading, not for copying exactly.
      return `\`${field.value.replace(/`/g, "'")}\``;
    case 'link':
      return `[open](${field.value.replace(/[()\s]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)})`;
    case 'text':
      return escapeMarkdown(field.value);
  }
}

export function renderMarkdown(message: Message): string {
  const lines = [escapeMarkdown(message.intro), ''];
  for (const field of message.fields) lines.push(`- **${field.label}:** ${markdownValue(field)}`);
  return lines.join('\n');
}

export function renderPlain(message: Message): string {
  return [message.intro, ...message.fields.map((f) => `${f.label}: ${f.value}`)].join('\n');
}
