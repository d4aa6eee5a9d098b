import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Config } from '../../platform/config/config.ts';

/**
 * Where backup objects live: a local folder or an S3 bucket, behind one small interface so the backup
 * service never knows which. Keys are relative paths (`backups/<id>/manifest.json`) that are validated
 * before they touch a path or a request, so no key can escape the folder or the prefix.
 */
export interface ObjectStore {
  /** Non-secret description for logs and the API: `file:///abs/folder` or `s3://bucket/prefix` (never credentials). */
  readonly location: string;
  /** Atomic for readers: a reader sees the old or the whole new object. */
  put(key: string, body: Buffer): Promise<void>;
  /** undefined when absent. */
  get(key: string): Promise<Buffer | undefined>;
  /** Every key under the prefix (a plain string prefix), sorted, all pages. */
  list(prefix: string): Promise<string[]>;
  /** true when the object existed just before and is gone now. */
  delete(key: string): Promise<boolean>;
}

export interface ObjectStoreOptions {
  /** Without credentials, S3 stores take them from the AWS SDK default chain (environment, profile, instance role). */
  s3?: { credentials?: { accessKeyId: string; secretAccessKey: string } };
}

// 255 is NAME_MAX on the file systems we run on; 512 leaves room under S3's 1024-byte limit for a prefix.
const segmentPattern = /^[A-Za-z0-9._-]{1,255}$/;
const maxKeyLength = 512;

function isKey(key: string): boolean {
  return key.length > 0 && key.length <= maxKeyLength && key.split('/').every((part) => segmentPattern.test(part) && part !== '.' && part !== '..');
}

/** Keys come from our own ids, so an invalid one is a bug: say which (truncated; keys hold no secrets). */
function checkKey(location: string, key: string): void {
  if (!isKey(key)) throw new Error(`${location}: ${JSON.stringify(key.slice(0, 80))} is not a valid object key`);
}

/** A prefix is empty, a key, or a key followed by `/`. */
function checkPrefix(location: string, prefix: string): void {
  if (prefix !== '' && !isKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix)) {
    throw new Error(`${location}: ${JSON.stringify(prefix.slice(0, 80))} is not a valid object key prefix`);
  }
}

/** The error code of a file system or SDK failure, when it looks like one: never free text from a server. */
function codeOf(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code ?? error.name;
  return typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : undefined;
}

function failure(location: string, operation: string, key: string, cause: unknown): Error {
  const code = codeOf(cause);
  return new Error(`${location}: ${operation}${key === '' ? '' : ` ${key}`} failed${code === undefined ? '' : ` (${code})`}`, { cause });
}

const absentCodes = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);

class LocalFolderStore implements ObjectStore {
  readonly location: string;
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
    this.location = pathToFileURL(root).href;
  }

  #path(key: string): string {
    return join(this.#root, ...key.split('/'));
  }

  async put(key: string, body: Buffer): Promise<void> {
    checkKey(this.location, key);
    const target = this.#path(key);
    try {
      for (let attempt = 1; ; attempt += 1) {
        try {
          await writeAtomically(target, body);
          return;
        } catch (error) {
          // A concurrent delete may remove the emptied folder between our mkdir and open: make it again.
          if (codeOf(error) !== 'ENOENT' || attempt === 3) throw error;
        }
      }
    } catch (error) {
      throw failure(this.location, 'put', key, error);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(this.location, key);
    try {
      return await readFile(this.#path(key));
    } catch (error) {
      if (absentCodes.has(codeOf(error) ?? '')) return undefined;
      throw failure(this.location, 'get', key, error);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(this.location, prefix);
    // Walk only below the deepest folder the prefix names in full.
    const base = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const keys: string[] = [];
    try {
      await walk(join(this.#root, ...base.split('/').filter((part) => part !== '')), base, keys);
    } catch (error) {
      throw failure(this.location, 'list', prefix, error);
    }
    return keys.filter((key) => key.startsWith(prefix)).sort();
  }

  async delete(key: string): Promise<boolean> {
    checkKey(this.location, key);
    const path = this.#path(key);
    try {
      await unlink(path);
    } catch (error) {
      if (absentCodes.has(codeOf(error) ?? '')) return false;
      throw failure(this.location, 'delete', key, error);
    }
    // Emptied folders go too: their names (backup and tenant ids) should not outlive the objects.
    for (let folder = dirname(path); folder.startsWith(this.#root + '/'); folder = dirname(folder)) {
      try {
        await rmdir(folder);
      } catch {
        break;
      }
    }
    return true;
  }
}

/** Temp file in the target's folder (same file system), fsync, rename over, fsync the folder. */
async function writeAtomically(target: string, body: Buffer): Promise<void> {
  const folder = dirname(target);
  await mkdir(folder, { recursive: true, mode: 0o700 });
  // `~` is not a key character, so list() never returns a temp file.
  const temp = join(folder, `~${randomBytes(8).toString('hex')}.partial`);
  const file = await open(temp, 'wx', 0o600);
  try {
    try {
      await file.writeFile(body);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function walk(folder: string, relative: string, keys: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (error) {
    if (absentCodes.has(codeOf(error) ?? '')) return;
    throw error;
  }
  for (const entry of entries) {
    if (!segmentPattern.test(entry.name)) continue;
    if (entry.isDirectory()) await walk(join(folder, entry.name), `${relative}${entry.name}/`, keys);
    else if (entry.isFile()) keys.push(relative + entry.name);
  }
}

interface S3Target {
  bucket: string;
  /** '' or ending in '/'. */
  prefix: string;
  endpoint?: string;
  region?: string;
  forcePathStyle: boolean;
}

class S3ObjectStore implements ObjectStore {
  readonly location: string;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #client: S3Client;

  constructor(target: S3Target, credentials: { accessKeyId: string; secretAccessKey: string } | undefined) {
    this.#bucket = target.bucket;
    this.#prefix = target.prefix;
    this.location = `s3://${target.bucket}${target.prefix === '' ? '' : `/${target.prefix.slice(0, -1)}`}`;
    this.#client = new S3Client({
      ...(target.region === undefined ? {} : { region: target.region }),
      ...(target.endpoint === undefined ? {} : { endpoint: target.endpoint }),
      ...(credentials === undefined ? {} : { credentials }),
      forcePathStyle: target.forcePathStyle,
    });
  }

  async put(key: string, body: Buffer): Promise<void> {
    checkKey(this.location, key);
    try {
      await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key, Body: body }));
    } catch (error) {
      throw failure(this.location, 'put', key, error);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(this.location, key);
    try {
      const response = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: this.#prefix + key }));
      return response.Body === undefined ? Buffer.alloc(0) : Buffer.from(await response.Body.transformToByteArray());
    } catch (error) {
      // A missing bucket is a misconfiguration, not a missing object.
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const code = codeOf(error);
      if (code === 'NoSuchKey' || (status === 404 && code !== 'NoSuchBucket')) return undefined;
      throw failure(this.location, 'get', key, error);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkPrefix(this.location, prefix);
    const keys: string[] = [];
    try {
      let token: string | undefined;
      do {
        const page = await this.#client.send(
          new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: this.#prefix + prefix, ...(token === undefined ? {} : { ContinuationToken: token }) }),
        );
        for (const { Key: full } of page.Contents ?? []) {
          const key = full?.startsWith(this.#prefix) === true ? full.slice(this.#prefix.length) : undefined;
          if (key !== undefined && isKey(key)) keys.push(key);
        }
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (error) {
      throw failure(this.location, 'list', prefix, error);
    }
    return keys.sort();
  }

  async delete(key: string): Promise<boolean> {
    checkKey(this.location, key);
    const full = this.#prefix + key;
    try {
      // DeleteObject answers 204 whether or not the key existed. Listing the exact key (keys sort before
      // their extensions) tells, and unlike HeadObject it does not mistake a missing bucket for a missing key.
      const listed = await this.#client.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: full, MaxKeys: 1 }));
      if (listed.Contents?.[0]?.Key !== full) return false;
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: full }));
      return true;
    } catch (error) {
      throw failure(this.location, 'delete', key, error);
    }
  }
}

function parseS3Url(url: URL): S3Target {
  const bucket = url.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error('an s3:// backup target needs a valid bucket name');
  if (url.username !== '' || url.password !== '' || url.port !== '' || url.hash !== '') {
    throw new Error('an s3:// backup target takes no credentials, port or fragment in its URL');
  }
  const path = url.pathname.replace(/^\/+|\/+$/g, '');
  if (path !== '' && !isKey(path)) throw new Error('an s3:// backup target has an invalid prefix');
  const target: S3Target = { bucket, prefix: path === '' ? '' : `${path}/`, forcePathStyle: false };
  for (const [name, value] of url.searchParams) {
    if (name === 'endpoint') {
      const endpoint = new URL(value);
      if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') throw new Error('an s3:// backup target endpoint must be http(s)');
      target.endpoint = value;
    } else if (name === 'region' && /^[a-z0-9-]{1,32}$/.test(value)) {
      target.region = value;
    } else if (name === 'forcePathStyle' && (value === 'true' || value === 'false')) {
      target.forcePathStyle = value === 'true';
    } else {
      throw new Error(`an s3:// backup target has an unknown or invalid query parameter ${JSON.stringify(name.slice(0, 40))}`);
    }
  }
  return target;
}

/** `file:///absolute/folder` or `s3://bucket/prefix?endpoint=...&region=...&forcePathStyle=true`. */
export function openObjectStore(url: string, options: ObjectStoreOptions = {}): ObjectStore {
  const parsed = new URL(url);
  if (parsed.protocol === 's3:') return new S3ObjectStore(parseS3Url(parsed), options.s3?.credentials);
  if (parsed.protocol === 'file:') {
    if (parsed.search !== '' || parsed.hash !== '' || (parsed.host !== '' && parsed.host !== 'localhost')) {
      throw new Error('a file:// backup target is a plain absolute folder path');
    }
    return new LocalFolderStore(resolve(fileURLToPath(parsed)));
  }
  throw new Error('a backup target is a file:// or s3:// URL');
}

/** The store of every region from config.backupTargets, defaulting to file://<dataDir>/backups/<region>. */
export function backupStoresOf(config: Pick<Config, 'backupTargets' | 'regions' | 'dataDir'>, options: ObjectStoreOptions = {}): Map<string, ObjectStore> {
  return new Map(
    config.regions.map((region) => {
      const target = config.backupTargets === undefined ? pathToFileURL(resolve(config.dataDir, 'backups', region)).href : config.backupTargets[region];
      // A region without its own target must not fall back to another location: its backups would leave the region.
      if (target === undefined) throw new Error(`backup targets name no target for region ${region}`);
      return [region, openObjectStore(target, options)];
    }),
  );
}
