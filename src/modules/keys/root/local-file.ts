import { randomBytes } from 'node:crypto';
import { constants, type promises as fsPromises } from 'node:fs';
import { link, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { type Clock, systemClock } from '../../../platform/clock.ts';
import { exposedModeProblem } from '../../../platform/private-file.ts';
import { AesRootKeyring, rootKeyBytes } from './aes-keyring.ts';
import { type RootKeyDescription, RootKeyError, type RootKeyProvider, type WrapContext } from './provider.ts';
import { decodeCanonicalBase64, isRootVersion } from './wrap-context.ts';

export const localRootKeyFormat = 'bulwark-root-key/v1';

interface StoredVersion {
  version: number;
  key: string;
  createdAt: string;
}

interface LoadedFile {
  keyring: AesRootKeyring;
  versions: { version: number; createdAt: string }[];
}

// On unknown_version the file is re-read (another process, e.g. `bulwark keys rotate-root`, may have
// added a version), but at most this often, so a stream of bad wrapped keys cannot turn into disk reads.
const reloadIntervalMs = 1000;
const checkPermissions = process.platform !== 'win32';
// O_NOFOLLOW is undefined on Windows, whatever @types/node says.
const noFollow: number = (constants as { O_NOFOLLOW?: number }).O_NOFOLLOW ?? 0;

/**
 * Opens the local root key file, creating it (mode 0600, its folder 0700) on first use.
 * Throws an Error naming the path and the fix when the file is readable by others or malformed.
 */
export function openLocalFileRootKey(path: string, clock: Clock = systemClock): Promise<LocalFileRootKey> {
  return LocalFileRootKey.open(path, clock);
}

/**
 * Versioned 256-bit root keys in a JSON file on local disk: the zero-setup default for one machine. It is
 * only as safe as the disk and its backups, which is why production should use a KMS.
 * File: `{ "format": "bulwark-root-key/v1", "versions": [{ "version", "key" (base64), "createdAt" }] }`.
 */
export class LocalFileRootKey implements RootKeyProvider {
  readonly kind = 'local-file' as const;
  readonly path: string;
  readonly #clock: Clock;
  #loaded: LoadedFile;
  /** Inode, size and mtime of the file as loaded: a rotation by another process replaces the file. */
  #loadedIdentity: string | undefined;
  #lastReload: number | undefined;
  #rotation: Promise<unknown> = Promise.resolve();

  private constructor(path: string, clock: Clock, loaded: LoadedFile) {
    this.path = path;
    this.#clock = clock;
    this.#loaded = loaded;
  }

  /** See openLocalFileRootKey. */
  static async open(path: string, clock: Clock = systemClock): Promise<LocalFileRootKey> {
    const absolute = resolve(path);
    let loaded = await readKeyFile(absolute);
    if (loaded === undefined) {
      await createKeyFile(absolute, clock);
      loaded = await readKeyFile(absolute);
      if (loaded === undefined) throw new Error(`root key file ${absolute} disappeared right after it was created`);
    }
    const provider = new LocalFileRootKey(absolute, clock, loaded);
    provider.#loadedIdentity = await fileIdentity(absolute);
    return provider;
  }

  /** Wraps under the newest version, re-reading the file first if another process (`bulwark keys rotate-root`) replaced it. */
  async wrap(dataKey: Buffer, context: WrapContext): Promise<string> {
    await this.#reloadIfReplaced();
    return this.#loaded.keyring.wrap(dataKey, context);
  }

  async unwrap(wrapped: string, context: WrapContext): Promise<Buffer> {
    const { keyring } = this.#loaded;
    const version = keyring.versionOf(wrapped);
    // Monotonic time, not the injected clock: this is a rate limit, and a frozen test clock must not stop it.
    if (!keyring.has(version) && (this.#lastReload === undefined || performance.now() - this.#lastReload >= reloadIntervalMs)) {
      this.#lastReload = performance.now();
      try {
        await this.reload();
      } catch (error) {
        throw new RootKeyError('unknown_version', `root key version ${version} is not loaded, and re-reading ${this.path} failed`, { cause: error });
      }
    }
    try {
      return this.#loaded.keyring.unwrap(wrapped, context);
    } catch (error) {
      if (error instanceof RootKeyError && error.reason === 'unknown_version') {
        throw new RootKeyError('unknown_version', `root key version ${version} is not in ${this.path}`);
      }
      throw error;
    }
  }

  /** Re-reads the file (with the same permission and format checks), e.g. after a rotation by another process. */
  async reload(): Promise<void> {
    // Identity first: a replacement between the two is then seen, and loaded, next time.
    const identity = await fileIdentity(this.path);
    const loaded = await readKeyFile(this.path);
    if (loaded === undefined) throw new Error(`root key file ${this.path} no longer exists`);
    this.#loaded = loaded;
    this.#loadedIdentity = identity;
  }

  async #reloadIfReplaced(): Promise<void> {
    const identity = await fileIdentity(this.path);
    // A file that vanished or cannot be read keeps the versions in memory; unwrap reports a real loss.
    if (identity !== undefined && identity !== this.#loadedIdentity) await this.reload().catch(() => undefined);
  }

  /**
   * Appends a new version and atomically replaces the file (temp file 0600 in the same folder, fsync,
   * rename, fsync of the folder). Rotations in this process run one at a time; a `<file>.lock` created with
   * O_EXCL keeps two processes from appending the same version number with different keys.
   */
  rotate(): Promise<RootKeyDescription> {
    const result = this.#rotation.then(() => this.#rotateNow());
    this.#rotation = result.catch(() => undefined);
    return result;
  }

  async #rotateNow(): Promise<RootKeyDescription> {
    const lockPath = `${this.path}.lock`;
    let lock: fsPromises.FileHandle;
    try {
      lock = await open(lockPath, 'wx', 0o600);
    } catch (error) {
      if (errorCode(error) === 'EEXIST') {
        throw new RootKeyError(
          'unavailable',
          `another root key rotation holds ${lockPath}; if none is running (a crash left it behind), delete that file and retry`,
        );
      }
      throw new RootKeyError('unavailable', `cannot create ${lockPath}: ${errorCode(error) ?? 'unknown error'}`, { cause: error });
    }
    try {
      // Start from the file, not from memory: another process may have rotated since we loaded it.
      const current = await readStoredVersions(this.path);
      if (current === undefined) throw new RootKeyError('unavailable', `root key file ${this.path} no longer exists`);
      const version = Math.max(...current.map((entry) => entry.version)) + 1;
      if (!isRootVersion(version)) throw new RootKeyError('unsupported', 'the root key has reached its last version number');
      const key = randomBytes(rootKeyBytes);
      const next = [...current, { version, key: key.toString('base64'), createdAt: this.#clock.now().toISOString() }];
      key.fill(0);
      try {
        await writeAtomically(this.path, serialize(next));
      } catch (error) {
        throw new RootKeyError('unavailable', `cannot write root key file ${this.path}: ${errorCode(error) ?? 'unknown error'}`, { cause: error });
      }
      await this.reload();
      return await this.describe();
    } finally {
      await lock.close();
      await unlink(lockPath).catch(() => undefined);
    }
  }

  async describe(): Promise<RootKeyDescription> {
    await this.#reloadIfReplaced();
    return {
      kind: this.kind,
      keyName: this.path,
      currentVersion: this.#loaded.keyring.currentVersion,
      versions: this.#loaded.versions.map(({ version, createdAt }) => ({ version, createdAt })),
    };
  }

  async ping(): Promise<void> {
    // The keys are in memory: nothing to reach.
  }
}

async function fileIdentity(path: string): Promise<string | undefined> {
  try {
    const stats = await lstat(path);
    return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
  } catch {
    return undefined;
  }
}

async function createKeyFile(path: string, clock: Clock): Promise<void> {
  // mkdir applies the mode only to folders it creates; an existing folder keeps its mode.
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const key = randomBytes(rootKeyBytes);
  const text = serialize([{ version: 1, key: key.toString('base64'), createdAt: clock.now().toISOString() }]);
  key.fill(0);
  const temp = await writeTempFile(path, text);
  try {
    // link() fails when the file exists, so two processes starting at once cannot both create a key
    // (the loser reads the winner's file), and a crash never leaves a half-written key file.
    await link(temp, path);
    await fsyncFolder(dirname(path));
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const temp = await writeTempFile(path, text);
  try {
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await fsyncFolder(dirname(path));
}

async function writeTempFile(path: string, text: string): Promise<string> {
  const temp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return temp;
}

async function fsyncFolder(folder: string): Promise<void> {
  // Makes the new directory entry durable; some platforms cannot open a folder for fsync.
  const handle = await open(folder, 'r').catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.sync();
  } catch {
    // EINVAL/EISDIR on platforms without directory fsync: the rename itself is still atomic.
  } finally {
    await handle.close();
  }
}

function serialize(versions: StoredVersion[]): string {
  return `${JSON.stringify({ format: localRootKeyFormat, versions }, null, 2)}\n`;
}

async function readKeyFile(path: string): Promise<LoadedFile | undefined> {
  const stored = await readStoredVersions(path);
  if (stored === undefined) return undefined;
  const keys = new Map<number, Buffer>();
  try {
    for (const entry of stored) {
      const key = decodeCanonicalBase64(entry.key);
      if (key === undefined) throw new Error('unreachable: keys were validated');
      keys.set(entry.version, key);
    }
    return {
      keyring: new AesRootKeyring('local', keys),
      versions: stored.map(({ version, createdAt }) => ({ version, createdAt })).sort((a, b) => a.version - b.version),
    };
  } finally {
    for (const key of keys.values()) key.fill(0);
  }
}

/** Reads and validates the file; undefined when it does not exist. */
async function readStoredVersions(path: string): Promise<StoredVersion[] | undefined> {
  let handle: fsPromises.FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted at the key path must not redirect us to another file.
    handle = await open(path, constants.O_RDONLY | noFollow);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    if (errorCode(error) === 'ELOOP') throw new Error(`root key file ${path} is a symbolic link; point BULWARK_DATA_DIR at the real file's folder instead`, { cause: error });
    throw new Error(`cannot open root key file ${path}: ${errorCode(error) ?? 'unknown error'}`, { cause: error });
  }
  let text: string;
  try {
    // fstat of the open file, not stat of the path: the file checked is the file read.
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error(`root key file ${path} is not a regular file`);
    const exposed = checkPermissions ? exposedModeProblem(stats.mode) : undefined;
    if (exposed !== undefined) throw new Error(`root key file ${path} ${exposed}; restrict it with \`chmod 600 ${path}\` and restart`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  return parseKeyFile(path, text);
}

function parseKeyFile(path: string, text: string): StoredVersion[] {
  // The messages name the field at fault but never echo a value: the file holds key material.
  const malformed = (problem: string): Error =>
    new Error(`root key file ${path} is malformed (${problem}); restore it from backup: a new key cannot read existing data`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed('not JSON');
  }
  if (!isObject(parsed)) throw malformed('not a JSON object');
  if (parsed['format'] !== localRootKeyFormat) throw malformed(`format must be "${localRootKeyFormat}"`);
  const unknownFields = Object.keys(parsed).filter((field) => field !== 'format' && field !== 'versions');
  if (unknownFields.length > 0) throw malformed('unknown top-level fields');
  const versions = parsed['versions'];
  if (!Array.isArray(versions) || versions.length === 0) throw malformed('versions must be a non-empty array');
  const seen = new Set<number>();
  return versions.map((entry: unknown, index) => {
    const where = `versions[${index}]`;
    if (!isObject(entry)) throw malformed(`${where} is not an object`);
    const { version, key, createdAt } = entry;
    if (typeof version !== 'number' || !isRootVersion(version)) throw malformed(`${where}.version must be an integer from 1 to 4294967295`);
    if (seen.has(version)) throw malformed(`version ${version} appears twice`);
    seen.add(version);
    const decoded = typeof key === 'string' ? decodeCanonicalBase64(key) : undefined;
    const valid = decoded?.length === rootKeyBytes;
    decoded?.fill(0);
    if (!valid || typeof key !== 'string') throw malformed(`${where}.key must be base64 of ${rootKeyBytes} bytes`);
    if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) throw malformed(`${where}.createdAt must be an ISO 8601 time`);
    return { version, key, createdAt };
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorCode(error: unknown): string | undefined {
  return isObject(error) && typeof error['code'] === 'string' ? error['code'] : undefined;
}
