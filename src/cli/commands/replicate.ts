import type { Command } from 'commander';
import type { ReplicationEvent, Replicator } from '../../pitr/replicate.js';
import { EXIT, LitekeepError } from '../../util/errors.js';
import { humanBytes } from '../../util/fs.js';
import { addTargetOptions, resolveConfig, selectTargets, type CommonOptions } from '../context.js';
import { print, printError, printJsonLine, warn } from '../output.js';
import { abortOnSignals } from '../signals.js';

interface ReplicateFlags extends CommonOptions {
  once?: boolean;
  interval?: string;
  json?: boolean;
}

function describe(event: ReplicationEvent): { line: string; level: 'info' | 'warn' | 'error' } | undefined {
  switch (event.kind) {
    case 'started':
      return {
        line: `replicating ${event.database} to ${event.destinations.join(', ')} (every ${event.intervalMs / 1000}s${event.mode === 'cooperative' ? ', cooperative: litekeep checkpoints the WAL' : ''}); stop with Ctrl-C`,
        level: 'info',
      };
    case 'gap':
      return event.reason === 'start'
        ? {
            line: `${event.database}: shipping to ${event.destination} starts here; taking a base snapshot so that recovery starts from now`,
            level: 'info',
          }
        : {
            line: `${event.database}: GAP on ${event.destination}: the app's checkpoint reset the WAL before litekeep read some commits; taking a new base snapshot (recovery to the moments in the gap is not possible)`,
            level: 'warn',
          };
    case 'error':
      return {
        line: `${event.database}: shipping to ${event.destination} failed (retrying every pass): ${event.error}`,
        level: 'error',
      };
    case 'base':
      return {
        line: `${event.database}: base snapshot ${event.ok ? 'taken' : 'FAILED (tried again in a while)'}: ${event.detail}`,
        level: event.ok ? 'info' : 'error',
      };
    case 'waiting':
      return {
        line: `${event.database}: replicated by pid ${event.holder.pid} (${event.holder.purpose}); waiting for it`,
        level: 'warn',
      };
    case 'claimed':
      return {
        line: `${event.database}: pid ${event.after.pid} let go; replicating ${event.database} here now`,
        level: 'info',
      };
    case 'warning':
      return { line: `${event.database}: ${event.message}`, level: 'warn' };
    case 'shipped':
    case 'checkpoint':
      return undefined;
  }
}

export function registerReplicate(program: Command): void {
  const command = program
    .command('replicate')
    .description(
      'follow WAL databases and ship every commit to their format: incremental destinations (point-in-time recovery), until stopped',
    )
    .option('--once', 'ship what is committed now (taking a base snapshot when one is needed), then exit')
    .option('--interval <duration>', 'how often to read the WAL (default: replicate.interval, 1s)')
    .option('--json', 'print one JSON line per event');
  addTargetOptions(command);
  command.action(async (options: ReplicateFlags) => {
    const { createReplicators } = await import('../../pitr/service.js');
    const resolved = resolveConfig(
      options,
      options.interval ? { 'replicate.interval': options.interval } : {},
    );
    const selected = selectTargets(resolved, options);
    // Without --db: the databases marked `replicate: true`, or every one when none is marked.
    const marked = selected.filter((t) => t.settings.replicate.enabled);
    const targets = options.db || marked.length === 0 ? selected : marked;
    let failed = false;
    const report = (event: ReplicationEvent) => {
      if (event.kind === 'error' || (event.kind === 'base' && !event.ok)) failed = true;
      if (options.json) {
        printJsonLine(event);
        return;
      }
      if (event.kind === 'shipped' && options.once) {
        print(
          `${event.database}: shipped ${event.result.segments.length} segment(s), ${event.result.frames} frames, ${humanBytes(event.result.bytes)} to ${event.destination}`,
        );
        return;
      }
      const text = describe(event);
      if (!text) return;
      if (text.level === 'error') printError(text.line);
      else if (text.level === 'warn') warn(text.line);
      else print(text.line);
    };
    const stop = abortOnSignals('replication');
    let replicators: Replicator[] = [];
    try {
      replicators = await createReplicators(targets, {
        onEvent: report,
        signal: stop.signal,
        holder: 'litekeep replicate',
      });
      for (const r of replicators) await r.prepare();
      // Every lock before any shipping: a database another process replicates is refused as a whole command.
      for (const r of replicators) await r.claim();
      if (options.once) {
        for (const r of replicators) {
          await r.passOnce();
          await r.settled();
          r.close();
        }
      } else {
        await Promise.all(replicators.map((r) => r.run(stop.signal)));
      }
    } finally {
      stop.dispose();
      for (const r of replicators) r.close();
    }
    if (failed) {
      if (options.once)
        throw new LitekeepError('replication did not ship everything (see above)', { exitCode: EXIT.failed });
      process.exitCode = EXIT.failed;
    }
  });
}
