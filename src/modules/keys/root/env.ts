import { AesRootKeyring, rootKeyBytes } from './aes-keyring.ts';
import { type RootKeyDescription, RootKeyError, type RootKeyProvider, type WrapContext } from './provider.ts';
import { decodeCanonicalBase64, isRootVersion } from './wrap-context.ts';

export interface EnvRootKeyOptions {
  /** Name of the variable the value came from, used in messages and `describe()` (never the value). */
  variableName?: string;
}

const singleKeyHint = `the base64 encoding of exactly ${rootKeyBytes} bytes (generate one with \`openssl rand -base64 ${rootKeyBytes}\`)`;

/**
 * Root keys from an environment variable: either one base64 key (version 1) or a versioned list
 * `1:<base64>,2:<base64>` whose highest version wraps. Rotation means editing the variable and restarting,
 * so `rotate()` refuses and says how.
 */
export class EnvRootKey implements RootKeyProvider {
  readonly kind = 'env' as const;
  readonly #variableName: string;
  readonly #keyring: AesRootKeyring;

  /** Throws an Error naming the variable and the problem, never echoing any part of the value. */
  constructor(value: string, options: EnvRootKeyOptions = {}) {
    this.#variableName = options.variableName ?? 'BULWARK_ROOT_KEY';
    const keys = parseEnvRootKeys(value, this.#variableName);
    try {
      this.#keyring = new AesRootKeyring('env', keys);
    } finally {
      for (const key of keys.values()) key.fill(0);
    }
  }

  async wrap(dataKey: Buffer, context: WrapContext): Promise<string> {
    return this.#keyring.wrap(dataKey, context);
  }

  async unwrap(wrapped: string, context: WrapContext): Promise<Buffer> {
    const unwrapped = (): Buffer => this.#keyring.unwrap(wrapped, context);
    try {
      return unwrapped();
    } catch (error) {
      if (error instanceof RootKeyError && error.reason === 'unknown_version') {
        throw new RootKeyError(
          'unknown_version',
          `${error.message}: add that version to ${this.#variableName} (<version>:<base64>, comma-separated) and restart`,
        );
      }
      throw error;
    }
  }

  async rotate(): Promise<RootKeyDescription> {
    throw new RootKeyError(
      'unsupported',
      `the env root key cannot rotate itself: add a new version to ${this.#variableName} ` +
        `(for example 1:<current key>,2:<new key from \`openssl rand -base64 ${rootKeyBytes}\`>), ` +
        'restart every instance, then rewrap the tenant data keys so they move to the new version',
    );
  }

  async describe(): Promise<RootKeyDescription> {
    const versions: RootKeyDescription['versions'] = [];
    for (let version = 1; version <= this.#keyring.currentVersion; version += 1) {
      if (this.#keyring.has(version)) versions.push({ version, createdAt: null });
    }
    return { kind: this.kind, keyName: this.#variableName, currentVersion: this.#keyring.currentVersion, versions };
  }

  async ping(): Promise<void> {
    // The keys are in memory: nothing to reach.
  }
}

/**
 * Parses the variable's value into version → 32-byte key. The caller owns (and should zero) the buffers.
 * Exported so that configuration can validate the value at startup with the same rules.
 */
export function parseEnvRootKeys(value: string, variableName = 'BULWARK_ROOT_KEY'): Map<number, Buffer> {
  const keys = new Map<number, Buffer>();
  const fail = (problem: string): never => {
    for (const key of keys.values()) key.fill(0);
    throw new Error(`${variableName} ${problem}`);
  };
  const text = typeof value === 'string' ? value.trim() : '';
  if (text === '') fail('is empty: set it to one root key or a list 1:<base64>,2:<base64>');

  if (!text.includes(':')) {
    const key = decodeCanonicalBase64(text);
    if (key?.length !== rootKeyBytes) {
      key?.fill(0);
      fail(`must be ${singleKeyHint}, or a versioned list 1:<base64>,2:<base64>`);
    } else {
      keys.set(1, key);
    }
    return keys;
  }

  const entries = text.split(',');
  entries.forEach((rawEntry, index) => {
    const entry = rawEntry.trim();
    const position = `entry ${index + 1} of ${entries.length}`;
    const colon = entry.indexOf(':');
    const versionText = colon === -1 ? '' : entry.slice(0, colon).trim();
    // Only digits are ever echoed back: anything else may be key material pasted in the wrong place.
    if (!/^[1-9][0-9]{0,9}$/.test(versionText) || !isRootVersion(Number(versionText))) {
      fail(`${position} must be <version>:<base64 key> with a version from 1 to 4294967295`);
    }
    const version = Number(versionText);
    if (keys.has(version)) fail(`lists version ${version} twice: each version must appear once`);
    const key = decodeCanonicalBase64(entry.slice(colon + 1).trim());
    if (key?.length !== rootKeyBytes) {
      key?.fill(0);
      fail(`version ${version}: the key must be ${singleKeyHint}`);
    } else {
      for (const [otherVersion, other] of keys) {
        if (other.equals(key)) {
          key.fill(0);
          fail(`versions ${otherVersion} and ${version} hold the same key: a new version needs a new random key`);
        }
      }
      keys.set(version, key);
    }
  });
  return keys;
}
