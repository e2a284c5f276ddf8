import { describe, expect, it } from 'vitest';
import { redactCapabilityUrl, redactSecrets, redactUrl, redactUrlsInText } from '../../src/util/redact.js';

describe('redactUrl', () => {
  it('masks user:pass@ credentials', () => {
    expect(redactUrl('https://alice:s3cret@ntfy.example.com/topic')).toBe(
      'https://***@ntfy.example.com/topic',
    );
    expect(redactUrl('https://tokenonly@host/x')).toBe('https://***@host/x');
  });

  it('masks values of sensitive query keys and keeps the rest as written', () => {
    expect(redactUrl('https://h/p?token=abc&x=1&api_key=k&X-Amz-Signature=f00&Sig=1#frag')).toBe(
      'https://h/p?token=***&x=1&api_key=***&X-Amz-Signature=***&Sig=***#frag',
    );
    expect(redactUrl('https://h/p?password=pw&access_token=t&auth=a&secret=s&q=ok')).toBe(
      'https://h/p?password=***&access_token=***&auth=***&secret=***&q=ok',
    );
  });

  it('leaves harmless URLs and non-URLs untouched', () => {
    expect(redactUrl('https://ntfy.sh')).toBe('https://ntfy.sh');
    expect(redactUrl('https://h/p?page=2')).toBe('https://h/p?page=2');
    expect(redactUrl('not a url')).toBe('not a url');
  });
});

describe('redactCapabilityUrl', () => {
  it('keeps only the origin of a URL that is itself a secret', () => {
    expect(redactCapabilityUrl('https://hc-ping.com/0f6b3f7e-1b8a-4c2e-9d2c-5f1a2b3c4d5e')).toBe(
      'https://hc-ping.com/***',
    );
    expect(redactCapabilityUrl('https://u:p@hooks.example.com/services/T0/B0/xyz?x=1')).toBe(
      'https://hooks.example.com/***',
    );
    expect(redactCapabilityUrl('https://ntfy.sh')).toBe('https://ntfy.sh');
    expect(redactCapabilityUrl('::bad::')).toBe('***');
  });
});

describe('redactSecrets', () => {
  it('replaces every known secret, its URL-encoded form, and URL credentials in the text', () => {
    const text = 'POST https://bob:hunter2@h/x?token=tk_abc failed: Bearer tk_abc rejected; pass=p%40ss p@ss';
    expect(redactSecrets(text, ['tk_abc', 'p@ss', undefined, ''])).toBe(
      'POST https://***@h/x?token=*** failed: Bearer *** rejected; pass=*** ***',
    );
  });

  it('masks a longer secret whole even when a shorter one is inside it', () => {
    expect(redactSecrets('key=abcdef123', ['abc', 'abcdef123'])).toBe('key=***');
  });

  it('redactUrlsInText finds URLs inside prose', () => {
    expect(redactUrlsInText('could not reach "https://a:b@x.io/p" (timeout)')).toBe(
      'could not reach "https://***@x.io/p" (timeout)',
    );
  });
});
