import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request exactly as the server received it. Header names are lower-case (Node's parsing). */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/topic?x=1`. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RecorderReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * `'hang'` never answers (the socket stays open until close()); `'destroy'` drops the connection without
 * a response, as a crashing proxy would.
 */
export type RecorderResponse = RecorderReply | 'hang' | 'destroy';

export interface Recorder {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/**
 * A real HTTP server on loopback that records every request, then answers as `respond` says
 * (default 200 "ok"). `n` counts requests from 1.
 */
export async function startRecorder(
  options: { respond?: (req: RecordedRequest, n: number) => RecorderResponse } = {},
): Promise<Recorder> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(recorded);
      const reply = options.respond?.(recorded, requests.length) ?? { status: 200, body: 'ok' };
      if (reply === 'hang') return;
      if (reply === 'destroy') {
        req.socket.destroy();
        return;
      }
      res.writeHead(reply.status, reply.headers);
      res.end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        // Hanging and keep-alive connections would otherwise keep close() waiting forever.
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
