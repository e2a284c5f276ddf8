import { createRequire } from 'node:module';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';

/*
 * zstd on a worker thread. zstd-napi's CompressStream compresses inside a synchronous call on the calling thread
 * (with zstd's own workers too: that call waits for them once their buffers are full), so the thread that reads,
 * hashes and encrypts stood still for most of a backup. Here the calling thread copies each input chunk into one
 * of a few pooled buffers and hands it over (transferred, not copied); the worker compresses it and hands it
 * back together with the compressed bytes, so at most POOL chunks are in flight and both threads stay busy.
 * Plain JavaScript, so that it runs the same from the built package and from the sources.
 */
const CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const binding = require(workerData.binding);
const cctx = new binding.CCtx();
cctx.setParameter(binding.CParameter.compressionLevel, workerData.level);
cctx.setParameter(binding.CParameter.checksumFlag, 1);
if (workerData.nbWorkers > 0) cctx.setParameter(binding.CParameter.nbWorkers, workerData.nbWorkers);
// One reused output buffer with room for a whole chunk's output: a fresh buffer per piece of output was garbage
// that this thread's heap let pile up (tens of MB of RSS) until its next collection.
const scratch = Buffer.allocUnsafe(binding.compressBound(workerData.chunk) + binding.cStreamOutSize());
parentPort.on('message', ({ input, length, end }) => {
  try {
    let src = Buffer.from(input, 0, length);
    // Only when one chunk's output outgrows the buffer (zstd flushing input it held back earlier).
    const spilled = [];
    let at = 0;
    const directive = end ? binding.EndDirective.end : binding.EndDirective.continue;
    for (;;) {
      if (scratch.length - at < binding.cStreamOutSize()) {
        spilled.push(Buffer.from(scratch.subarray(0, at)));
        at = 0;
      }
      const space = scratch.length - at;
      const [ret, produced, consumed] = cctx.compressStream2(scratch.subarray(at), src, directive);
      at += produced;
      src = src.subarray(consumed);
      if (src.length === 0 && (end ? ret === 0 : produced < space)) break;
    }
    // One buffer of exactly the compressed size per chunk, handed over without a copy.
    let total = at;
    for (const piece of spilled) total += piece.length;
    const output = new ArrayBuffer(total);
    let offset = 0;
    for (const piece of spilled) {
      new Uint8Array(output, offset, piece.length).set(piece);
      offset += piece.length;
    }
    new Uint8Array(output, offset, at).set(scratch.subarray(0, at));
    parentPort.postMessage({ input, output }, [input, output]);
  } catch (error) {
    parentPort.postMessage({ error: String(error && error.message || error) });
  }
});
`;

/** Input handed to the worker at a time: large enough that messaging costs nothing, small enough to stay flat. */
const CHUNK = 1024 * 1024;
/** Chunks in flight (and pooled input buffers): one being compressed, the next ones ready. */
const POOL = 3;

let bindingPath: string | undefined;

interface Reply {
  input?: ArrayBuffer;
  output?: ArrayBuffer;
  error?: string;
}

/** A zstd compressing stage whose work runs on its own thread; output is a standard zstd frame with checksum. */
export class ZstdWorkerStream extends Transform {
  private readonly worker: Worker;
  private readonly free: ArrayBuffer[] = [];
  private current?: Uint8Array;
  private fill = 0;
  private inFlight = 0;
  /** The callback of the write that waits for a free buffer, or for the reader to want more. */
  private waiting?: () => void;
  private readerFull = false;
  private finishing?: TransformCallback;

  constructor(level: number, nbWorkers = 0) {
    super();
    bindingPath ??= createRequire(import.meta.url).resolve('zstd-napi/binding.js');
    this.worker = new Worker(CODE, {
      eval: true,
      workerData: { binding: bindingPath, level, nbWorkers, chunk: CHUNK },
    });
    for (let i = 0; i < POOL; i++) this.free.push(new ArrayBuffer(CHUNK));
    this.worker.on('message', (reply: Reply) => this.onReply(reply));
    this.worker.on('error', (error) => this.destroy(error));
    // A worker that ends by itself (killed, out of memory) must not leave the stream waiting forever.
    this.worker.on('exit', (code) => {
      if (!this.destroyed && (this.inFlight > 0 || this.finishing))
        this.destroy(new Error(`the zstd worker stopped (exit ${code})`));
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    const step = (): void => {
      while (offset < chunk.length) {
        if (!this.current) {
          const buffer = this.free.pop();
          if (!buffer) {
            this.waiting = step;
            return;
          }
          this.current = new Uint8Array(buffer);
          this.fill = 0;
        }
        const n = Math.min(CHUNK - this.fill, chunk.length - offset);
        this.current.set(chunk.subarray(offset, offset + n), this.fill);
        this.fill += n;
        offset += n;
        if (this.fill === CHUNK) this.send(false);
      }
      if (this.readerFull) this.waiting = () => callback();
      else callback();
    };
    step();
  }

  override _flush(callback: TransformCallback): void {
    this.finishing = callback;
    // The last chunk ends the frame (an empty input still makes a valid, empty frame).
    const buffer = this.current ? undefined : this.free.pop();
    if (!this.current && !buffer) {
      // All buffers are in flight: the reply that frees one sends the end.
      this.waiting = () => this._flush(callback);
      return;
    }
    if (!this.current) {
      this.current = new Uint8Array(buffer!);
      this.fill = 0;
    }
    this.send(true);
  }

  override _read(size: number): void {
    this.readerFull = false;
    this.resume_();
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    void this.worker.terminate();
    callback(error);
  }

  private send(end: boolean): void {
    const input = this.current!.buffer as ArrayBuffer;
    this.worker.postMessage({ input, length: this.fill, end }, [input]);
    this.current = undefined;
    this.fill = 0;
    this.inFlight++;
  }

  private onReply(reply: Reply): void {
    if (this.destroyed) return;
    this.inFlight--;
    if (reply.error !== undefined) {
      this.destroy(new Error(`zstd compression failed: ${reply.error}`));
      return;
    }
    this.free.push(reply.input!);
    if (reply.output!.byteLength > 0 && !this.push(Buffer.from(reply.output!))) this.readerFull = true;
    if (this.finishing && this.inFlight === 0 && !this.waiting) {
      const done = this.finishing;
      this.finishing = undefined;
      void this.worker.terminate();
      done();
      return;
    }
    this.resume_();
  }

  /** Lets the waiting write go on when a buffer is free and the reader is not full. */
  private resume_(): void {
    if (!this.waiting || this.readerFull || this.free.length === 0) return;
    const go = this.waiting;
    this.waiting = undefined;
    go();
  }
}
