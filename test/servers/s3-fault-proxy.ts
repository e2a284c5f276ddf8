import http from 'node:http';
import type net from 'node:net';

export type ProxyAction = 'pass' | 'destroy' | 'hold' | number;

export interface FaultProxy {
  endpoint: string;
  /** `METHOD path` of every request, in order. */
  seen: string[];
  /** What to do with the next requests; change it at any time. */
  rule: (req: http.IncomingMessage, n: number) => ProxyAction;
  /** Resolves once a request was held (its client now waits forever): the moment a test kills the client. */
  held(): Promise<string>;
  close(): Promise<void>;
}

/**
 * A loopback proxy in front of an S3 server that passes requests through (headers untouched, so SigV4
 * signatures still verify) or, by `rule`, drops the connection mid-body, answers an error status, or holds the
 * request without answering: a network that fails at a chosen moment, or a process caught in mid-request.
 */
export async function startFaultProxy(upstreamEndpoint: string): Promise<FaultProxy> {
  const target = new URL(upstreamEndpoint);
  let n = 0;
  let onHeld: ((what: string) => void) | undefined;
  let heldWhat: string | undefined;
  const proxy: FaultProxy = {
    endpoint: '',
    seen: [],
    rule: () => 'pass',
    held: () =>
      heldWhat !== undefined
        ? Promise.resolve(heldWhat)
        : new Promise<string>((resolve) => {
            onHeld = resolve;
          }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    n += 1;
    const what = `${req.method} ${req.url}`;
    proxy.seen.push(what);
    const action = proxy.rule(req, n);
    if (action === 'destroy') {
      // Part of the body first, so that the connection drops mid-upload.
      req.once('data', () => req.socket.destroy());
      return;
    }
    if (action === 'hold') {
      req.resume();
      heldWhat = what;
      onHeld?.(what);
      return;
    }
    if (typeof action === 'number') {
      req.resume();
      req.on('end', () => {
        res.writeHead(action, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected ${action}</Message></Error>`,
        );
      });
      return;
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return proxy;
}
