import type { ArtifactMetadata } from './types.js';

/**
 * Where a folder-like destination (a local folder, an rclone remote, an SFTP server) keeps litekeep's metadata
 * of a copy: `<host folder>/.litekeep-meta/<file>.json`, beside the copy itself (docs/layout.md).
 */
export const SIDECAR_DIR = '.litekeep-meta';

export function sidecarFileName(name: string): string {
  return `${name}.json`;
}

export function encodeSidecar(metadata: ArtifactMetadata): string {
  return JSON.stringify(metadata, null, 2);
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Reads a sidecar written by any machine: only fields of the expected type are believed, so that a damaged or
 * foreign file can make a copy unverifiable but never make it look like something it is not. Undefined when
 * the text is not a JSON object.
 */
export function parseSidecar(text: string): Partial<ArtifactMetadata> | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const out: Partial<ArtifactMetadata> = {};
  const text_ = (key: keyof ArtifactMetadata) =>
    typeof r[key] === 'string' ? (r[key] as string) : undefined;
  const count = (key: keyof ArtifactMetadata) =>
    typeof r[key] === 'number' && Number.isSafeInteger(r[key]) && (r[key] as number) >= 0
      ? (r[key] as number)
      : undefined;
  const sha256 = text_('sha256');
  if (sha256 && HEX64.test(sha256)) out.sha256 = sha256;
  const plainSha256 = text_('plainSha256');
  if (plainSha256 && HEX64.test(plainSha256)) out.plainSha256 = plainSha256;
  const bytes = count('bytes');
  if (bytes !== undefined) out.bytes = bytes;
  const plainBytes = count('plainBytes');
  if (plainBytes !== undefined) out.plainBytes = plainBytes;
  const backupTime = text_('backupTime');
  if (backupTime && !Number.isNaN(Date.parse(backupTime))) out.backupTime = backupTime;
  const compression = text_('compression');
  if (compression === 'none' || compression === 'gzip' || compression === 'zstd')
    out.compression = compression;
  const encryption = text_('encryption');
  if (encryption === 'none' || encryption === 'age') out.encryption = encryption;
  for (const key of ['sourceName', 'litekeepVersion', 'host', 'trigger', 'journalMode'] as const) {
    const value = text_(key);
    if (value !== undefined) out[key] = value;
  }
  return out;
}
