import type { ArtifactMetadata } from './types.js';

// S3's user metadata, also what rclone's S3 backend keeps: apart from the S3 client, so that using it loads no SDK.
const META_PREFIX = 'litekeep-';

/**
 * S3 user metadata travels as `x-amz-meta-*` headers: keys come back lower-cased and values must be ASCII,
 * so names are kebab-case and free text (the source name) is percent-encoded.
 */
export function buildS3Metadata(metadata: ArtifactMetadata): Record<string, string> {
  const entries: [string, string | number | undefined][] = [
    ['sha256', metadata.sha256],
    ['bytes', metadata.bytes],
    ['plain-sha256', metadata.plainSha256],
    ['plain-bytes', metadata.plainBytes],
    ['source', metadata.sourceName === undefined ? undefined : encodeURIComponent(metadata.sourceName)],
    ['backup-time', metadata.backupTime],
    ['compression', metadata.compression],
    ['encryption', metadata.encryption],
    ['version', metadata.litekeepVersion],
    ['host', metadata.host === undefined ? undefined : encodeURIComponent(metadata.host)],
    ['trigger', metadata.trigger],
    ['journal-mode', metadata.journalMode],
  ];
  const out: Record<string, string> = {};
  for (const [key, value] of entries)
    if (value !== undefined && value !== '') out[META_PREFIX + key] = String(value);
  return out;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export function parseS3Metadata(raw: Record<string, string> | undefined): Partial<ArtifactMetadata> {
  if (!raw) return {};
  const get = (key: string) => raw[META_PREFIX + key] ?? raw[(META_PREFIX + key).toLowerCase()];
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  let sourceName = get('source');
  try {
    if (sourceName !== undefined) sourceName = decodeURIComponent(sourceName);
  } catch {
    // A value some other tool wrote without encoding: show it as it is.
  }
  const meta: Partial<ArtifactMetadata> = {
    sha256: get('sha256'),
    host: get('host') === undefined ? undefined : safeDecode(get('host')!),
    bytes: num(get('bytes')),
    plainSha256: get('plain-sha256'),
    plainBytes: num(get('plain-bytes')),
    sourceName,
    backupTime: get('backup-time'),
    compression: get('compression') as ArtifactMetadata['compression'] | undefined,
    encryption: get('encryption') as ArtifactMetadata['encryption'] | undefined,
    litekeepVersion: get('version'),
    trigger: get('trigger'),
    journalMode: get('journal-mode'),
  };
  for (const key of Object.keys(meta) as (keyof ArtifactMetadata)[])
    if (meta[key] === undefined) delete meta[key];
  return meta;
}
