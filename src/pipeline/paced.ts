import { Transform, type TransformOptions } from 'node:stream';

/**
 * A Transform that may turn one input chunk into many output chunks (decompression) and waits for the reader
 * between them, so that a highly compressible chunk cannot balloon memory. Transform's own machinery only
 * applies backpressure between input chunks.
 */
export abstract class PacedTransform extends Transform {
  private wakeReader?: () => void;

  constructor(options?: TransformOptions) {
    super(options);
  }

  override _read(size: number): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
    super._read(size);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
    callback(error);
  }

  /** Pushes `chunk`; resolves once the reader wants more. Returns false if the stream was destroyed meanwhile. */
  protected async pushPaced(chunk: Buffer): Promise<boolean> {
    if (this.destroyed) return false;
    if (!this.push(chunk)) {
      await new Promise<void>((resolve) => {
        this.wakeReader = resolve;
      });
    }
    return !this.destroyed;
  }
}
