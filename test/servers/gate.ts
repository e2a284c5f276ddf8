import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { s3Operation } from './s3-server.js';

/** A request as the gate saw it. */
export interface GateRequest {
  method: string;
  url: string;
  /** The S3 operation it asks for (see s3Operation). */
  operation: string;
  /** Set once the client has the whole answer (undefined while held, or when the answer was dropped). */
  answered?: number;
  /** Order of arrival and of answering, from one counter: tells what happened before what. */
  arrivedAt: number;
  answeredAt?: number;
}

export type GateMatch = (r: GateRequest) => boolean;

export interface HeldAnswer {
  /** Resolves when a matching request has arrived (it is forwarded at once; only the answer waits). */
  arrived: Promise<GateRequest>;
  /** Sends the held answer on to the client. */
  release(): void;
}

export interface Gate {
  /** `http://127.0.0.1:<port>`: point the client here instead of at the server. */
  endpoint: string;
  requests: GateRequest[];
  /** While true, every connection is cut at once, as a server that died. */
  dead: boolean;
  /** The next request matching `match` reaches the server, but its answer waits for `release()`. */
  holdAnswer(match: GateMatch): HeldAnswer;
  /** The server handles the next matching request, but the client's connection drops before the answer. */
  dropAnswer(match: GateMatch): void;
  /** Calls `effect` when the next matching request arrives, before anything else happens to it. */
  onRequest(match: GateMatch, effect: (r: GateRequest) => void): void;
  close(): Promise<void>;
}

/**
 * A loopback proxy between a client and a test server that can hold or drop answers and play a dead server:
 * the network faults of a bad night, in an order a test decides. Headers pass through untouched, so SigV4
 * signatures made for the gate's host still verify.
 */
export async function startGate(target: string): Promise<Gate> {
  const upstream = new URL(target);
  const requests: GateRequest[] = [];
  const holds: { match: GateMatch; arrived: (r: GateRequest) => void; released: Promise<void> }[] = [];
  const drops: GateMatch[] = [];
  const effects: { match: GateMatch; effect: (r: GateRequest) => void }[] = [];
  let clock = 0;
  const gate: Gate = {
    endpoint: '',
    requests,
    dead: false,
    holdAnswer(match) {
      let arrived!: (r: GateRequest) => void;
      let release!: () => void;
      const arrivedPromise = new Promise<GateRequest>((resolve) => (arrived = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      holds.push({ match, arrived, released });
      return { arrived: arrivedPromise, release };
    },
    dropAnswer(match) {
      drops.push(match);
    },
    onRequest(match, effect) {
      effects.push({ match, effect });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const server = http.createServer((req, res) => {
    const entry: GateRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      operation: s3Operation(req.method ?? 'GET', req.url ?? '/', req.headers),
      arrivedAt: ++clock,
    };
    requests.push(entry);
    const effectIndex = effects.findIndex((e) => e.match(entry));
    if (effectIndex >= 0) effects.splice(effectIndex, 1)[0].effect(entry);
    if (gate.dead) {
      req.socket.destroy();
      return;
    }
    const holdIndex = holds.findIndex((h) => h.match(entry));
    const hold = holdIndex >= 0 ? holds.splice(holdIndex, 1)[0] : undefined;
    const dropIndex = drops.findIndex((m) => m(entry));
    const drop = dropIndex >= 0 ? drops.splice(dropIndex, 1)[0] !== undefined : false;
    const forwarded = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', async () => {
          if (hold) await hold.released;
          if (drop || gate.dead) {
            req.socket.destroy();
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          res.end(Buffer.concat(chunks), () => {
            entry.answered = up.statusCode ?? 502;
            entry.answeredAt = ++clock;
          });
        });
      },
    );
    forwarded.on('error', () => res.destroy());
    req.pipe(forwarded);
    hold?.arrived(entry);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gate.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return gate;
}
