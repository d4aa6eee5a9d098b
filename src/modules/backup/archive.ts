import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { open as openEnvelope, seal as sealEnvelope, type EnvelopeContext } from '../keys/envelope.ts';
import type { TableRows } from './snapshot.ts';

/**
 * The backup archive. A backup is a manifest plus one encrypted segment per tenant and one for the
 * platform, each gzip-compressed JSON sealed with Bulwark's envelope (AES-256-GCM, associated data binding
 * the segment to its backup and name):
 *
 *   backups/<id>/manifest.json          (first region)   what is in the backup, checksums, MAC
 *   backups/<id>/platform.bin           (first region)   sealed with the backup's own key (wrapped by the root key)
 *   backups/<id>/tenants/<tenant>.bin   (tenant's region) sealed with the tenant's escrowed backup key
 *
 * A tenant's rows never share a key with anything else, and its backup key lives outside the backups (the
 * key escrow): destroying it at offboarding makes every copy of every segment of that tenant unreadable,
 * wherever those copies went, while the rest of each backup still restores.
 */
export const archiveFormat = 'bulwark-backup/v1';

export interface SegmentEntry {
  /** `platform` or `tenant/<tenantId>`. */
  name: string;
  tenantId: string | null;
  region: string;
  object: string;
  sha256: string;
  bytes: number;
  rows: number;
}

export interface Manifest {
  format: typeof archiveFormat;
  id: string;
  createdAt: string;
  kind: 'scheduled' | 'on-demand';
  /** The schedule slot a scheduled backup covers. */
  slot: string | null;
  engine: 'pglite' | 'postgres';
  schemaVersion: number;
  /** The backup's own key, wrapped by the root key (purpose backup-key): seals the platform segment and keys the MAC. */
  wrappedKey: string;
  segments: SegmentEntry[];
  /** HMAC-SHA256 of the manifest without this field, under a key derived from the backup key. */
  mac: string;
}

export const manifestObject = (id: string) => `backups/${id}/manifest.json`;
export const platformObject = (id: string) => `backups/${id}/platform.bin`;
export const tenantObject = (id: string, tenantId: string) => `backups/${id}/tenants/${tenantId}.bin`;

function segmentContext(backupId: string, segment: string, tenantId: string | null): EnvelopeContext {
  return { tenantId: tenantId ?? 'platform', table: 'backup', column: segment, rowId: backupId };
}

export function sealSegment(key: Buffer, backupId: string, segment: string, tenantId: string | null, tables: TableRows): Buffer {
  const plain = gzipSync(Buffer.from(JSON.stringify(tables), 'utf8'));
  return sealEnvelope(key, 1, plain, segmentContext(backupId, segment, tenantId));
}

/** Throws EnvelopeError when the key is wrong or a byte changed. */
export function openSegment(key: Buffer, backupId: string, segment: string, tenantId: string | null, sealed: Buffer): TableRows {
  const plain = openEnvelope(sealed, segmentContext(backupId, segment, tenantId), (version) => (version === 1 ? key : undefined));
  return JSON.parse(gunzipSync(plain).toString('utf8')) as TableRows;
}

export function countRows(tables: TableRows): number {
  return Object.values(tables).reduce((sum, rows) => sum + rows.length, 0);
}

export function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

function macKey(backupKey: Buffer): Buffer {
  return createHmac('sha256', backupKey).update('bulwark/backup-manifest-mac/v1').digest();
}

function macOf(backupKey: Buffer, manifest: Omit<Manifest, 'mac'>): Buffer {
  return createHmac('sha256', macKey(backupKey)).update(JSON.stringify(manifest)).digest();
}

export function signManifest(backupKey: Buffer, manifest: Omit<Manifest, 'mac'>): Manifest {
  return { ...manifest, mac: macOf(backupKey, manifest).toString('hex') };
}

export function manifestMacValid(backupKey: Buffer, manifest: Manifest): boolean {
  const { mac, ...rest } = manifest;
  const expected = macOf(backupKey, rest);
  const given = Buffer.from(mac, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A manifest as read back: the shape is checked before anything in it is trusted (the MAC needs the key it names). */
export function parseManifest(body: Buffer): Manifest {
  const parsed = JSON.parse(body.toString('utf8')) as Partial<Manifest>;
  if (parsed.format !== archiveFormat || typeof parsed.id !== 'string' || typeof parsed.wrappedKey !== 'string' || !Array.isArray(parsed.segments) || typeof parsed.mac !== 'string') {
    throw new Error('not a Bulwark backup manifest');
  }
  return parsed as Manifest;
}
