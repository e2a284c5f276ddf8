import { Worker } from 'node:worker_threads';

/*
 * The sha256 of a file that is being written out of order, computed on another thread as its written prefix
 * grows: a restore writes pages pack by pack, and hashing the image after the last page would be one more pass
 * over it on the thread that decompresses and checks chunks. The worker reads what is on disk (the bytes the
 * check must be about, not the buffers they were written from), through one reused buffer. Plain JavaScript,
 * so that it runs the same from the built package and from the sources.
 */
const CODE = `
const crypto = require('node:crypto');
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const hash = crypto.createHash('sha256');
const buffer = Buffer.allocUnsafe(1024 * 1024);
let fd;
let done = 0;
parentPort.on('message', (message) => {
  try {
    if (fd === undefined) fd = fs.openSync(workerData.path, 'r');
    while (done < message.upTo) {
      const got = fs.readSync(fd, buffer, 0, Math.min(buffer.length, message.upTo - done), done);
      if (got === 0) throw new Error('the file ends at ' + done + ' bytes, before ' + message.upTo);
      hash.update(buffer.subarray(0, got));
      done += got;
    }
    if (message.end) {
      fs.closeSync(fd);
      parentPort.postMessage({ sha256: hash.digest('hex'), bytes: done });
    }
  } catch (error) {
    parentPort.postMessage({ error: String((error && error.message) || error) });
  }
});
`;

interface Reply {
  sha256?: string;
  bytes?: number;
  error?: string;
}

export class PrefixHasher {
  private readonly worker: Worker;
  private readonly result: Promise<{ sha256: string; bytes: number }>;
  private sent = 0;

  constructor(path: string) {
    // A worker needs little: one 1 MiB buffer and a hash. Small limits keep the restore's memory flat.
    this.worker = new Worker(CODE, {
      eval: true,
      workerData: { path },
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    this.result = new Promise((resolve, reject) => {
      this.worker.on('message', (reply: Reply) => {
        if (reply.error) reject(new Error(`cannot hash ${path}: ${reply.error}`));
        else resolve({ sha256: reply.sha256!, bytes: reply.bytes! });
      });
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`the hashing thread stopped (exit ${code})`)));
    });
    // Reported by finish(); until then keep Node from calling a failure unhandled.
    this.result.catch(() => undefined);
  }

  /** The first `bytes` of the file are written for good: hash them (in the background). */
  advance(bytes: number): void {
    if (bytes <= this.sent) return;
    this.sent = bytes;
    this.worker.postMessage({ upTo: bytes });
  }

  /** Hashes up to `bytes` and returns the digest of exactly that prefix. */
  async finish(bytes: number): Promise<{ sha256: string; bytes: number }> {
    this.sent = Math.max(this.sent, bytes);
    this.worker.postMessage({ upTo: bytes, end: true });
    try {
      return await this.result;
    } finally {
      await this.worker.terminate();
    }
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
