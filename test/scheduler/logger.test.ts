import { describe, expect, it } from 'vitest';
import { createLogger, prettyLine } from '../../src/scheduler/index.js';

function capture(isTTY = false) {
  const chunks: string[] = [];
  return { chunks, destination: { isTTY, write: (chunk: string) => chunks.push(chunk) } };
}

describe('createLogger', () => {
  it('writes one JSON object per line when not on a terminal', () => {
    const { chunks, destination } = capture(false);
    const logger = createLogger({ destination });
    logger.info({ database: 'app', bytes: 42 }, 'run finished');
    logger.debug({}, 'hidden at the default level');
    const records = chunks
      .join('')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 30, msg: 'run finished', database: 'app', bytes: 42 });
    expect(typeof records[0].time).toBe('number');
  });

  it('writes readable lines on a terminal', () => {
    const { chunks, destination } = capture(true);
    const logger = createLogger({ destination, level: 'debug' });
    logger.warn({ trigger: 'schedule' }, 'skipped: previous run still in progress');
    logger.error({ err: new Error('disk full') }, 'run failed');
    const text = chunks.join('');
    expect(text).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} .*WARN.* skipped: previous run still in progress trigger=schedule\n/,
    );
    expect(text).toContain('run failed error="disk full"');
    expect(text).not.toContain('{"level"');
  });

  it('pretty: false forces JSON even on a terminal', () => {
    const { chunks, destination } = capture(true);
    createLogger({ destination, pretty: false }).info({}, 'x');
    expect(JSON.parse(chunks.join(''))).toMatchObject({ msg: 'x' });
  });

  it('prettyLine quotes values with spaces and passes non-JSON through', () => {
    const line = prettyLine(JSON.stringify({ level: 30, time: 0, msg: 'hello', path: '/a b', n: 1 }));
    expect(line).toMatch(/INFO {2}hello path="\/a b" n=1\n$/);
    expect(prettyLine('not json')).toBe('not json\n');
  });
});
