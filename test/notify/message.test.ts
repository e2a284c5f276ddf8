import { describe, expect, it } from 'vitest';
import {
  buildMessage,
  buildNtfyRequest,
  buildPingRequest,
  buildWebhookRequest,
  formatBytes,
  formatDuration,
  renderMarkdown,
  renderPlain,
  type RunEvent,
} from '../../src/notify/index.js';

const time = new Date('2026-03-01T02:00:12Z');

const success: RunEvent = {
  kind: 'success',
  database: 'app',
  host: 'db1',
  time,
  file: 'backup-2026-03-01-030000.db.zst',
  bytes: 12_345_678,
  path: '/var/backups/app/backup-2026-03-01-030000.db.zst',
  link: 'https://drive.google.com/file/d/abc123/view',
  rotated: 2,
  durationMs: 4200,
};

const failure: RunEvent = {
  kind: 'failure',
  database: 'app',
  host: 'db1',
  time,
  error: 'Drive API returned 403: insufficient permissions\n    at upload (drive.js:10:5)',
  stage: 'upload',
  succeeded: ['local backup kept'],
  failed: ['Drive upload failed'],
  durationMs: 61_000,
};

describe('formatting', () => {
  it('formats sizes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(12_345_678)).toBe('11.8 MiB');
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.0 MiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });

  it('formats durations', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(4200)).toBe('4.2 s');
    expect(formatDuration(185_000)).toBe('3 min 05 s');
    expect(formatDuration(3_720_000)).toBe('1 h 02 min');
  });
});

describe('message texts', () => {
  it('success: file, size, local path, Drive link, rotated, duration', () => {
    expect(renderMarkdown(buildMessage(success, { timeZone: 'Europe/Berlin' }))).toBe(
      [
        'Backup of app on db1 succeeded.',
        '',
        '- **File:** `backup-2026-03-01-030000.db.zst`',
        '- **Size:** 11.8 MiB',
        '- **Local:** `/var/backups/app/backup-2026-03-01-030000.db.zst`',
        '- **Drive:** [open](https://drive.google.com/file/d/abc123/view)',
        '- **Rotated:** 2 old backups removed',
        '- **Duration:** 4.2 s',
      ].join('\n'),
    );
  });

  it('failure: one-line error, stage, local time, what still worked', () => {
    const message = buildMessage(failure, { timeZone: 'Europe/Berlin' });
    expect(message.title).toBe('Backup FAILED: app (db1)');
    expect(renderPlain(message)).toBe(
      [
        'Backup of app on db1 failed at stage upload.',
        'Error: Drive API returned 403: insufficient permissions',
        'Stage: upload',
        'Time: 2026-03-01 03:00:12 Europe/Berlin',
        'Outcome: local backup kept, Drive upload failed',
        'Duration: 1 min 01 s',
      ].join('\n'),
    );
  });

  it('a success with failures is partial and says what failed', () => {
    const partial: RunEvent = {
      ...success,
      link: undefined,
      succeeded: ['local backup kept'],
      failed: ['Drive upload failed'],
      error: 'quota exceeded',
    };
    const message = buildMessage(partial, { timeZone: 'UTC' });
    expect(message.title).toBe('Backup partly failed: app (db1)');
    expect(renderPlain(message)).toContain(
      'Outcome: local backup kept, Drive upload failed\nError: quota exceeded',
    );
    expect(buildNtfyRequest(partial, { topic: 't' }).headers).toMatchObject({
      Priority: 'high',
      Tags: 'warning',
    });
  });

  it('escapes Markdown in names and keeps code spans closed', () => {
    const md = renderMarkdown(
      buildMessage({ ...failure, database: 'my_app*', error: 'bad `thing`' }, { timeZone: 'UTC' }),
    );
    expect(md).toContain('Backup of my\\_app\\* on db1 failed');
    expect(md).toContain("- **Error:** `bad 'thing'`");
  });
});

describe('request builders', () => {
  it('ntfy: ASCII-safe headers, RFC 2047 for non-ASCII titles, no line breaks', () => {
    const request = buildNtfyRequest(
      { ...success, database: 'café\r\nX-Evil: 1' },
      { server: 'https://ntfy.example.com/', topic: 'backups', tags: ['db'] },
    );
    expect(request.url).toBe('https://ntfy.example.com/backups');
    const title = request.headers.Title;
    expect(title).toMatch(/^=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=$/);
    const decoded = Buffer.from(title.slice('=?UTF-8?B?'.length, -2), 'base64').toString('utf8');
    expect(decoded).toBe('Backup succeeded: café X-Evil: 1 (db1)');
    for (const value of Object.values(request.headers)) expect(value).toMatch(/^[\x20-\x7e]*$/);
  });

  it('ntfy: credentials in the server URL become Basic auth, and the URL loses them', () => {
    const request = buildNtfyRequest(success, { server: 'https://u:p%40ss@ntfy.example.com', topic: 'x' });
    expect(request.url).toBe('https://ntfy.example.com/x');
    expect(request.headers.Authorization).toBe(`Basic ${Buffer.from('u:p@ss').toString('base64')}`);
  });

  it('webhook: configured headers override defaults case-insensitively', () => {
    const request = buildWebhookRequest(
      success,
      { url: 'https://hooks.example.com/x', headers: { 'content-type': 'application/vnd.x+json' } },
      { version: '9.9.9' },
    );
    expect(request.headers).toEqual({
      'User-Agent': 'litekeep/9.9.9',
      'content-type': 'application/vnd.x+json',
    });
  });

  it('ping: suffix per event, query kept', () => {
    const url = 'https://hc-ping.com/uuid-1234?rid=7';
    const at = (e: RunEvent) => buildPingRequest(e, { url }).url;
    expect(at({ ...success, kind: 'start' })).toBe('https://hc-ping.com/uuid-1234/start?rid=7');
    expect(at(success)).toBe('https://hc-ping.com/uuid-1234?rid=7');
    expect(at(failure)).toBe('https://hc-ping.com/uuid-1234/fail?rid=7');
    expect(at({ ...success, failed: ['Drive upload failed'] })).toBe(
      'https://hc-ping.com/uuid-1234/fail?rid=7',
    );
    expect(at({ ...success, kind: 'test' })).toBe('https://hc-ping.com/uuid-1234/log?rid=7');
  });
});
