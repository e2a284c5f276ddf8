import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI_SOURCE = path.join(root, 'src', 'cli', 'main.ts');
/** tsx's loader by absolute URL: `--import tsx` would be resolved from the child's working folder. */
export const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (from source, through tsx) in its own process. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...cleanEnv(), ...options.env };
    const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_SOURCE, ...args], {
      cwd: options.cwd ?? root,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** The environment without anything that would steer litekeep from outside the test. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      k.startsWith('LITEKEEP_') ||
      ['DATABASE_URL', 'BACKUP_DIR', 'AI_WORKSPACE', 'GOOGLE_APPLICATION_CREDENTIALS'].includes(k)
    )
      continue;
    env[k] = v;
  }
  env.TZ = env.TZ ?? 'UTC';
  return env;
}

const shellQuote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the real CLI on a terminal: util-linux `script` gives it a pty (80 columns, 24 rows) for stdin, stdout and
 * stderr, so what a person at a terminal sees is what comes back (output of both streams, escape codes
 * included). `input` is typed into it. Tests call needPrograms(ctx, 'script') first.
 */
export function runOnTerminal(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number; output: string }> {
  const command = [process.execPath, '--import', TSX_LOADER, CLI_SOURCE, ...args].map(shellQuote).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-q', '-e', '-c', `stty rows 24 cols 80; exec ${command}`, '/dev/null'], {
      cwd: options.cwd ?? root,
      env: { ...cleanEnv(), ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), output });
    });
    child.stdin.end(options.input ?? '');
  });
}

export interface CliChild {
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when stderr (so far or later) matches; rejects when the process exits first. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<CliResult>;
}

/** Like runCli, but hands back the running process, for tests that signal it mid-run. */
export function spawnCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): CliChild {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_SOURCE, ...args], {
    cwd: options.cwd ?? root,
    env: { ...cleanEnv(), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const wake of waiters) wake();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const wake of waiters) wake();
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
  return {
    process: child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStderr(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(stderr)) {
            done();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(
              new Error(`exited before stderr matched ${pattern}\nstdout:\n${stdout}\nstderr:\n${stderr}`),
            );
          }
        };
        const timeout = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${pattern}\nstdout:\n${stdout}\nstderr:\n${stderr}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timeout);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
