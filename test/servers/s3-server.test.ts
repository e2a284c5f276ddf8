import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type S3TestServer } from './s3-server.js';

/**
 * The test S3 server itself: what litekeep's S3 tests rely on it to do like S3 does. Driven with the AWS SDK
 * directly, not through litekeep.
 */

const MiB = 1024 * 1024;
let server: S3TestServer;
let client: S3Client;

function makeClient(accessKeyId = 'S3RVER'): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId, secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
}

beforeAll(async () => {
  server = await startS3Server();
  client = makeClient();
});
afterAll(async () => {
  client?.destroy();
  await server?.close();
});

const Bucket = () => server.bucket;
const statusOf = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const nameOf = (error: unknown) => (error as { name?: string }).name;

async function readObject(Key: string): Promise<string> {
  const out = await client.send(new GetObjectCommand({ Bucket: Bucket(), Key }));
  return out.Body!.transformToString();
}

async function startUpload(Key: string): Promise<string> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: Bucket(), Key }));
  return UploadId!;
}

async function uploadPart(Key: string, UploadId: string, PartNumber: number, Body: Buffer) {
  const { ETag } = await client.send(
    new UploadPartCommand({ Bucket: Bucket(), Key, UploadId, PartNumber, Body, ContentLength: Body.length }),
  );
  return { ETag: ETag!, PartNumber };
}

async function listed(Prefix: string) {
  const out = await client.send(new ListMultipartUploadsCommand({ Bucket: Bucket(), Prefix }));
  return (out.Uploads ?? []).map((u) => ({ key: u.Key, uploadId: u.UploadId }));
}

describe('the test S3 server', () => {
  it('PutObject with If-None-Match: * writes a new key and answers 412 when the key exists', async () => {
    const Key = 'cond/put.txt';
    await client.send(new PutObjectCommand({ Bucket: Bucket(), Key, Body: 'first', IfNoneMatch: '*' }));
    const error = await client
      .send(new PutObjectCommand({ Bucket: Bucket(), Key, Body: 'second', IfNoneMatch: '*' }))
      .catch((e: unknown) => e);
    expect(statusOf(error)).toBe(412);
    expect(nameOf(error)).toBe('PreconditionFailed');
    expect(await readObject(Key)).toBe('first');
    // Without the condition, an overwrite is allowed, as on S3.
    await client.send(new PutObjectCommand({ Bucket: Bucket(), Key, Body: 'third' }));
    expect(await readObject(Key)).toBe('third');
  });

  it('answers 409 to a conditional PutObject while another one of the same key is in progress', async () => {
    const Key = 'cond/racing.txt';
    const body = new PassThrough();
    const first = client.send(
      new PutObjectCommand({ Bucket: Bucket(), Key, Body: body, ContentLength: 10, IfNoneMatch: '*' }),
    );
    body.write('01234');
    // Wait until the server has the first request in hand.
    for (let i = 0; i < 200 && !fs.existsSync(path.join(server.dir, Bucket(), 'cond')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const error = await client
      .send(new PutObjectCommand({ Bucket: Bucket(), Key, Body: 'other', IfNoneMatch: '*' }))
      .catch((e: unknown) => e);
    expect(statusOf(error)).toBe(409);
    expect(nameOf(error)).toBe('ConditionalRequestConflict');
    body.end('56789');
    await first;
    expect(await readObject(Key)).toBe('0123456789');
  });

  it('CompleteMultipartUpload with If-None-Match: * answers 412 when the key exists and keeps the upload open', async () => {
    const Key = 'cond/multipart.bin';
    await client.send(new PutObjectCommand({ Bucket: Bucket(), Key, Body: 'already here' }));
    const UploadId = await startUpload(Key);
    const part = await uploadPart(Key, UploadId, 1, crypto.randomBytes(1000));
    const error = await client
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: Bucket(),
          Key,
          UploadId,
          MultipartUpload: { Parts: [part] },
          IfNoneMatch: '*',
        }),
      )
      .catch((e: unknown) => e);
    expect(statusOf(error)).toBe(412);
    expect(await readObject(Key)).toBe('already here');
    expect(await listed('cond/multipart')).toEqual([{ key: Key, uploadId: UploadId }]);
    await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key, UploadId }));

    // A new key completes under the same condition.
    const fresh = 'cond/multipart-new.bin';
    const id = await startUpload(fresh);
    const data = crypto.randomBytes(2000);
    const p = await uploadPart(fresh, id, 1, data);
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: Bucket(),
        Key: fresh,
        UploadId: id,
        MultipartUpload: { Parts: [p] },
        IfNoneMatch: '*',
      }),
    );
    const stored = fs.readFileSync(path.join(server.dir, Bucket(), `${fresh}._S3rver_object`));
    expect(stored.equals(data)).toBe(true);
    expect(server.openUploads().filter((u) => u.key.startsWith('cond/'))).toEqual([]);
  });

  it('lists open multipart uploads by prefix, across pages, and aborting one frees its parts', async () => {
    const keys = ['mpu/a/one.bin', 'mpu/a/two.bin', 'mpu/b/three.bin'];
    const ids: string[] = [];
    for (const key of keys) {
      const id = await startUpload(key);
      ids.push(id);
      await uploadPart(key, id, 1, crypto.randomBytes(5 * MiB));
    }
    expect(server.openUploads().filter((u) => u.key.startsWith('mpu/'))).toMatchObject(
      keys.map((key) => ({ key, parts: 1, zombie: false })),
    );
    expect(await listed('mpu/a/')).toEqual([
      { key: keys[0], uploadId: ids[0] },
      { key: keys[1], uploadId: ids[1] },
    ]);
    // Paging by key and upload id markers.
    const first = await client.send(
      new ListMultipartUploadsCommand({ Bucket: Bucket(), Prefix: 'mpu/', MaxUploads: 2 }),
    );
    expect(first.IsTruncated).toBe(true);
    const second = await client.send(
      new ListMultipartUploadsCommand({
        Bucket: Bucket(),
        Prefix: 'mpu/',
        MaxUploads: 2,
        KeyMarker: first.NextKeyMarker,
        UploadIdMarker: first.NextUploadIdMarker,
      }),
    );
    expect(second.IsTruncated).toBe(false);
    expect([...(first.Uploads ?? []), ...(second.Uploads ?? [])].map((u) => u.Key)).toEqual(
      [keys[0], keys[2], keys[1]].sort(),
    );
    expect(new Date(first.Uploads![0].Initiated!).getTime()).toBeLessThanOrEqual(Date.now());

    await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key: keys[0], UploadId: ids[0] }));
    expect(fs.existsSync(path.join(server.dir, Bucket(), '._S3rver_uploads', ids[0]))).toBe(false);
    expect(await listed('mpu/a/')).toEqual([{ key: keys[1], uploadId: ids[1] }]);
    // After an abort, the upload is gone for parts, completion and a second abort alike.
    for (const attempt of [
      () => uploadPart(keys[0], ids[0], 2, crypto.randomBytes(100)),
      () =>
        client.send(
          new CompleteMultipartUploadCommand({
            Bucket: Bucket(),
            Key: keys[0],
            UploadId: ids[0],
            MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"x"' }] },
          }),
        ),
      () =>
        client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key: keys[0], UploadId: ids[0] })),
    ]) {
      const error = await attempt().catch((e: unknown) => e);
      expect(statusOf(error)).toBe(404);
      expect(nameOf(error)).toBe('NoSuchUpload');
    }
    for (const [i, key] of keys.entries()) {
      if (i === 0) continue;
      await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key: key, UploadId: ids[i] }));
    }
    expect(server.openUploads().filter((u) => u.key.startsWith('mpu/'))).toEqual([]);
    expect(
      server.requests.filter((r) => r.operation === 'AbortMultipartUpload').map((r) => r.status),
    ).toContain(204);
  });

  it('a part in flight when its upload is aborted is still stored: a zombie only another abort frees', async () => {
    const Key = 'zombie/x.bin';
    const UploadId = await startUpload(Key);
    const body = new PassThrough();
    const part = client.send(
      new UploadPartCommand({
        Bucket: Bucket(),
        Key,
        UploadId,
        PartNumber: 1,
        Body: body,
        ContentLength: 10,
      }),
    );
    body.write('01234');
    const partFile = path.join(server.dir, Bucket(), '._S3rver_uploads', UploadId, '1');
    for (let i = 0; i < 200 && !fs.existsSync(partFile); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key, UploadId }));
    body.end('56789');
    await part;
    expect(server.openUploads().filter((u) => u.key === Key)).toMatchObject([{ parts: 1, zombie: true }]);
    expect(await listed('zombie/')).toEqual([]);
    await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key, UploadId }));
    expect(server.openUploads().filter((u) => u.key === Key)).toEqual([]);
  });

  it('still checks the access key on the operations the proxy answers itself', async () => {
    const wrong = makeClient('NOT-A-KEY');
    try {
      const UploadId = await startUpload('auth/x.bin');
      for (const attempt of [
        () => wrong.send(new ListMultipartUploadsCommand({ Bucket: Bucket() })),
        () => wrong.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key: 'auth/x.bin', UploadId })),
      ]) {
        const error = await attempt().catch((e: unknown) => e);
        expect(statusOf(error)).toBe(403);
        expect(nameOf(error)).toBe('InvalidAccessKeyId');
      }
      expect(await listed('auth/')).toEqual([{ key: 'auth/x.bin', uploadId: UploadId }]);
      await client.send(new AbortMultipartUploadCommand({ Bucket: Bucket(), Key: 'auth/x.bin', UploadId }));
    } finally {
      wrong.destroy();
    }
  });
});
