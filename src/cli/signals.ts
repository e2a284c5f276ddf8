/**
 * For commands that do long work (backup, restore, verify): the first SIGINT/SIGTERM (Ctrl-C, a cron or
 * systemd timeout) aborts the work through its AbortSignal, so temp files are removed and nothing half-written
 * is left; a second one exits at once.
 */
export function abortOnSignals(what: string): { signal: AbortSignal; dispose(): void } {
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (abort.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
    process.stderr.write(`litekeep: ${signal} received, stopping the ${what} and removing its temp files\n`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: abort.signal,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
