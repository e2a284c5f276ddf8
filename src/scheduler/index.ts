export { parseDuration, formatDuration, DurationError } from '../util/duration.js';
export {
  DEFAULT_SCHEDULE,
  ScheduleError,
  validateSchedule,
  nextRuns,
  previousRun,
  needsCatchUp,
  catchUpDecision,
  type CatchUpInput,
  type CatchUpDecision,
} from './schedule.js';
export {
  acquireLock,
  readLockHolder,
  isProcessAlive,
  LockHeldError,
  type Lock,
  type LockHolder,
  type LockOptions,
} from './lock.js';
export {
  startDaemon,
  installSignalHandlers,
  SKIPPED_MESSAGE,
  type DaemonOptions,
  type DaemonHandle,
  type RunTrigger,
  type RunOutcome,
  type SignalOptions,
} from './daemon.js';
export {
  startHttpServer,
  evaluateHealth,
  destinationProblem,
  renderMetrics,
  parseListen,
  isLoopback,
  HttpConfigError,
  type DaemonStatus,
  type DatabaseStatus,
  type DatabaseHealth,
  type DestinationHealth,
  type DestinationHealthInput,
  type HealthReport,
  type HttpServerOptions,
  type HttpServerHandle,
} from './http.js';
export { createLogger, prettyLine, type LoggerOptions, type LogSink } from './logger.js';
