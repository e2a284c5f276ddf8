import { Worker } from 'node:worker_threads';

/**
 * Hashes a file on another thread: an upload that sends the bytes itself (SFTP) keeps its own thread for the
 * connection's encryption, and both run at once on two cores. Plain JavaScript, so that it runs the same from
 * the built package and from the sources.
 */
const CODE = `
const crypto = require('node:crypto');
const fs = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const hashes = workerData.types.map((type) => [type, crypto.createHash(type)]);
let bytes = 0;
const stream = fs.createReadStream(workerData.path, { highWaterMark: 1024 * 1024 });
stream.on('data', (chunk) => {
  bytes += chunk.length;
  for (const [, hash] of hashes) hash.update(chunk);
});
stream.on('error', (error) => parentPort.postMessage({ error: error.message }));
stream.on('end', () =>
  parentPort.postMessage({ bytes, digests: Object.fromEntries(hashes.map(([type, hash]) => [type, hash.digest('hex')])) }),
);
`;

/** `signal` stops the hashing (the promise then rejects): an upload that failed does not wait for it. */
export function hashFileInWorker(
  path: string,
  types: string[],
  signal?: AbortSignal,
): Promise<{ bytes: number; digests: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
    const worker = new Worker(CODE, { eval: true, workerData: { path, types } });
    const stop = () => {
      void worker.terminate();
      reject(Object.assign(new Error('cancelled'), { name: 'AbortError' }));
    };
    signal?.addEventListener('abort', stop, { once: true });
    worker.once('message', (message: { error?: string; bytes: number; digests: Record<string, string> }) => {
      signal?.removeEventListener('abort', stop);
      void worker.terminate();
      if (message.error) reject(new Error(`cannot read ${path}: ${message.error}`));
      else resolve(message);
    });
    worker.once('error', (error) => {
      signal?.removeEventListener('abort', stop);
      reject(error);
    });
  });
}
