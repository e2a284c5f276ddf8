import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { classifyRcloneFailure, redactRcloneOutput, type RcloneFailureKind } from './rclone-output.js';

/**
 * One `rclone rcd` (rclone's remote control daemon) on loopback for as long as a destination is in use: every
 * operation is an HTTP call to it, so that rclone signs in and connects once (an SSH handshake, an OAuth token
 * refresh) rather than once per operation as separate `rclone` commands would. Measured in docs/benchmarks.md.
 */

export interface RcloneDaemonOptions {
  binary: string;
  /** Global flags: config file, user flags. */
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Values to mask in anything rclone says. */
  secrets: () => Promise<string[]>;
  /** Stop after this long without use (ms); default 30 s. */
  idleMs?: number;
}

export class RcloneFailure extends Error {
  override name = 'RcloneFailure';
  readonly kind: RcloneFailureKind;
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.kind = classifyRcloneFailure(message);
  }

  get notFound(): boolean {
    return this.status === 404 || this.kind === 'not-found';
  }
}

interface Running {
  child: ChildProcess;
  port: number;
}

/**
 * rclone under a small shell that stops it when litekeep's end of its stdin closes — however litekeep ends,
 * even killed outright, no rclone daemon is left behind.
 */
const WRAPPER = [
  'exec 3<&0',
  '"$@" </dev/null &',
  'child=$!',
  '(read -r _ <&3; kill "$child" 2>/dev/null) &',
  'wait "$child"',
].join('\n');

const all = new Set<RcloneDaemon>();
let exitHook = false;

export class RcloneDaemon {
  private running?: Promise<Running>;
  private readonly user = 'litekeep';
  private readonly pass = crypto.randomBytes(24).toString('hex');
  private readonly agent = new http.Agent({ keepAlive: true });
  private active = 0;
  private idleTimer?: NodeJS.Timeout;

  constructor(private readonly options: RcloneDaemonOptions) {
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const daemon of all) daemon.stop();
      });
    }
  }

  private start(): Promise<Running> {
    all.add(this);
    this.running ??= new Promise<Running>((resolve, reject) => {
      const child = spawn(
        'sh',
        [
          '-c',
          WRAPPER,
          'sh',
          this.options.binary,
          'rcd',
          '--rc-addr',
          '127.0.0.1:0',
          '--rc-serve',
          ...this.options.args,
        ],
        {
          // The credentials of the control port go by environment, which other users cannot read.
          env: { ...this.options.env, RCLONE_RC_USER: this.user, RCLONE_RC_PASS: this.pass },
          stdio: ['pipe', 'ignore', 'pipe'],
        },
      );
      let log = '';
      const onData = (d: Buffer) => {
        log += d.toString('utf8');
        const m = /Serving remote control on http:\/\/127\.0\.0\.1:(\d+)\//.exec(log);
        if (!m) return;
        child.stderr!.off('data', onData);
        child.stderr!.resume();
        // Neither the daemon nor its pipes keep litekeep running; the exit hook and the wrapper stop it.
        child.unref();
        (child.stdin as unknown as { unref?: () => void }).unref?.();
        (child.stderr as unknown as { unref?: () => void }).unref?.();
        resolve({ child, port: Number(m[1]) });
      };
      child.stderr!.on('data', onData);
      child.stdin!.on('error', () => undefined);
      child.once('exit', (code) => {
        this.running = undefined;
        const line = log.trim().split('\n').at(-1) ?? '';
        reject(
          /not found|No such file/.test(line) && code === 127
            ? Object.assign(new Error('ENOENT'), { code: 'ENOENT' })
            : new Error(`rclone rcd exited (${code}): ${line.replace(/^\S+ \S+ /, '')}`),
        );
      });
    });
    this.running.catch(() => undefined);
    return this.running;
  }

  /** Stops the daemon now (it starts again when needed). */
  stop(): void {
    all.delete(this);
    clearTimeout(this.idleTimer);
    const running = this.running;
    this.running = undefined;
    void running?.then(({ child }) => child.stdin?.end()).catch(() => undefined);
    this.agent.destroy();
  }

  /** Marks work in progress, so that the idle stop waits for it. */
  private async use<T>(work: () => Promise<T>): Promise<T> {
    this.active += 1;
    clearTimeout(this.idleTimer);
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  private release(): void {
    this.active -= 1;
    if (this.active === 0) {
      this.idleTimer = setTimeout(() => this.stop(), this.options.idleMs ?? 30_000);
      this.idleTimer.unref();
    }
  }

  private async request(
    method: 'GET' | 'POST',
    path: string,
    body: Buffer | undefined,
    headers: Record<string, string>,
  ): Promise<http.IncomingMessage> {
    const { port } = await this.start();
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          agent: this.agent,
          auth: `${this.user}:${this.pass}`,
          headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        },
        resolve,
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  private async failure(text: string, status: number): Promise<RcloneFailure> {
    return new RcloneFailure(redactRcloneOutput(text, await this.options.secrets()), status);
  }

  /** Calls an rc method; long ones (copies, moves) run as jobs polled to the end, stopped on `signal`. */
  async call<T = Record<string, unknown>>(
    method: string,
    params: Record<string, unknown>,
    options: { async?: boolean; signal?: AbortSignal } = {},
  ): Promise<T> {
    return this.use(async () => {
      const post = async (m: string, p: Record<string, unknown>) => {
        const res = await this.request('POST', `/${m}`, Buffer.from(JSON.stringify(p)), {
          'content-type': 'application/json',
        });
        const chunks: Buffer[] = [];
        for await (const chunk of res) chunks.push(chunk as Buffer);
        const text = Buffer.concat(chunks).toString('utf8');
        const parsed = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
        if (res.statusCode !== 200)
          throw await this.failure(String(parsed.error ?? text), res.statusCode ?? 500);
        return parsed;
      };
      if (!options.async) return (await post(method, params)) as T;
      const { jobid } = (await post(method, { ...params, _async: true })) as { jobid: number };
      const stop = () => void post('job/stop', { jobid }).catch(() => undefined);
      options.signal?.addEventListener('abort', stop, { once: true });
      try {
        // Polled often: a 512 MiB copy ends within seconds, and each poll is a loopback call of about a
        // millisecond, while a poll every 500 ms made an upload wait 0.25 s on average after it had ended.
        for (let wait = 10; ; wait = Math.min(wait * 2, 40)) {
          const job = (await post('job/status', { jobid })) as {
            finished: boolean;
            success: boolean;
            error: string;
            output: T;
          };
          if (job.finished) {
            if (options.signal?.aborted) throw Object.assign(new Error('cancelled'), { name: 'AbortError' });
            if (!job.success) throw await this.failure(job.error || 'failed', 500);
            return job.output;
          }
          await new Promise((r) => setTimeout(r, wait));
        }
      } finally {
        options.signal?.removeEventListener('abort', stop);
      }
    });
  }

  /** A file's bytes through `--rc-serve`; fails, rather than ends short, when the transfer breaks. */
  async read(fs: string, remote: string): Promise<Readable> {
    this.active += 1;
    clearTimeout(this.idleTimer);
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        this.release();
      }
    };
    try {
      const path = `/${encodeURIComponent(`[${fs}]`)}/${remote.split('/').map(encodeURIComponent).join('/')}`;
      const res = await this.request('GET', path, undefined, {});
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        for await (const chunk of res) chunks.push(chunk as Buffer);
        const text = Buffer.concat(chunks).toString('utf8').trim();
        throw await this.failure(text || `HTTP ${res.statusCode}`, res.statusCode ?? 500);
      }
      const expected = Number(res.headers['content-length']);
      const counted = new LengthCheck(Number.isFinite(expected) ? expected : undefined, remote);
      res.on('error', (error) => counted.destroy(error));
      res.on('aborted', () => counted.destroy(new Error(`the transfer of ${remote} broke off`)));
      counted.on('close', release);
      return res.pipe(counted);
    } catch (error) {
      release();
      throw error;
    }
  }

  /**
   * Writes a small file through `operations/uploadfile` (replacing it). `config` is rclone's per-call
   * configuration (`_config`), e.g. `{ IgnoreChecksum: true }`.
   */
  async write(
    fs: string,
    dir: string,
    name: string,
    text: string,
    config?: Record<string, unknown>,
  ): Promise<void> {
    await this.use(async () => {
      const boundary = `litekeep${crypto.randomBytes(12).toString('hex')}`;
      const body = Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name.replace(/"/g, '')}"\r\n` +
            `Content-Type: application/octet-stream\r\n\r\n`,
        ),
        Buffer.from(text),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const query = new URLSearchParams({
        fs,
        remote: dir,
        ...(config ? { _config: JSON.stringify(config) } : {}),
      }).toString();
      const res = await this.request('POST', `/operations/uploadfile?${query}`, body, {
        'content-type': `multipart/form-data; boundary=${boundary}`,
      });
      const chunks: Buffer[] = [];
      for await (const chunk of res) chunks.push(chunk as Buffer);
      if (res.statusCode !== 200) {
        const text_ = Buffer.concat(chunks).toString('utf8');
        let message = text_;
        try {
          message = String((JSON.parse(text_) as { error?: string }).error ?? text_);
        } catch {
          // not JSON
        }
        throw await this.failure(message, res.statusCode ?? 500);
      }
    });
  }
}

/** Passes bytes through and fails at the end when fewer (or more) arrived than the server announced. */
class LengthCheck extends Transform {
  private count = 0;
  constructor(
    private readonly expected: number | undefined,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.expected !== undefined && this.count !== this.expected)
      callback(new Error(`the transfer of ${this.what} ended after ${this.count} of ${this.expected} bytes`));
    else callback();
  }
}
