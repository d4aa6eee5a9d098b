import { type RootKeyDescription, RootKeyError, type RootKeyProvider, type WrapContext } from './provider.ts';
import { assertDataKey, dataKeyBytes, decodeCanonicalBase64, isRootVersion, wrapAad } from './wrap-context.ts';

export interface VaultTransitOptions {
  /** Vault or OpenBao address, e.g. `https://vault.internal:8200` (a path prefix behind a proxy is kept). */
  address: string;
  token: string;
  /** Mount path of the transit secrets engine. Default `transit`. */
  mountPath?: string;
  /** Name of the transit key (type aes256-gcm96, so that `associated_data` is honoured). */
  keyName: string;
  /** Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`. */
  namespace?: string;
  /** Deadline for each HTTP call, response body included. Default 5000. */
  timeoutMs?: number;
  /** For tests. Default: the global fetch. */
  fetch?: typeof fetch;
}

type Operation = 'wrap' | 'unwrap' | 'rotate' | 'describe' | 'ping';

interface VaultAnswer {
  status: number;
  body: unknown;
  location: string | null;
}

const vaultCiphertextPattern = /^vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/]+={0,2}$/;
const maxWrappedLength = 4096;

/**
 * Root key held by a HashiCorp Vault / OpenBao transit secrets engine: the key never leaves Vault, which
 * wraps and unwraps data keys over HTTP. Revoking the token (or its policy) cuts Bulwark off at once,
 * which makes this the provider for customer-managed keys. docs/root-keys.md lists the exact calls.
 *
 * Wrapped form: `bwrk:vault:<Vault ciphertext, vault:v<N>:...>`, encrypted with `associated_data` binding
 * the tenant and data key version (the same bytes as the other providers' AAD).
 */
export class VaultTransitRootKey implements RootKeyProvider {
  readonly kind = 'vault-transit' as const;
  readonly #base: string;
  readonly #token: string;
  readonly #mount: string;
  readonly #keyName: string;
  readonly #namespace: string | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  /** Throws when an option is invalid; the message names the option, never the token. */
  constructor(options: VaultTransitOptions) {
    this.#base = parseAddress(options.address);
    if (typeof options.token !== 'string' || !/^[\x21-\x7e]{1,2048}$/.test(options.token)) {
      throw new Error('Vault transit: the token must be 1 to 2048 printable ASCII characters without spaces');
    }
    this.#token = options.token;
    const mount = (options.mountPath ?? 'transit').replace(/^\/+|\/+$/g, '');
    if (!/^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/.test(mount) || mount.split('/').some((part) => part === '.' || part === '..')) {
      throw new Error('Vault transit: mountPath must be a path of letters, digits, ".", "_" and "-" segments');
    }
    this.#mount = mount;
    // Vault's own rule for key names (framework.GenericNameRegex).
    if (typeof options.keyName !== 'string' || !/^\w(?:[\w.-]*\w)?$/.test(options.keyName) || options.keyName.length > 128) {
      throw new Error('Vault transit: keyName must be letters, digits, "_", "-" and "." (not at either end)');
    }
    this.#keyName = options.keyName;
    const namespace = options.namespace?.replace(/^\/+|\/+$/g, '');
    if (namespace !== undefined && namespace !== '' && !/^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/.test(namespace)) {
      throw new Error('Vault transit: namespace must be a path of letters, digits, ".", "_" and "-" segments');
    }
    this.#namespace = namespace === '' ? undefined : namespace;
    const timeoutMs = options.timeoutMs ?? 5000;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
      throw new Error('Vault transit: timeoutMs must be an integer from 1 to 600000');
    }
    this.#timeoutMs = timeoutMs;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** `POST /v1/{mount}/encrypt/{key}` with `plaintext` and `associated_data`. */
  async wrap(dataKey: Buffer, context: WrapContext): Promise<string> {
    assertDataKey(dataKey);
    const aad = wrapAad(context);
    const answer = await this.#send('wrap', 'POST', `${this.#mount}/encrypt/${this.#keyName}`, {
      plaintext: dataKey.toString('base64'),
      associated_data: aad.toString('base64'),
    });
    const ciphertext = this.#data('wrap', answer)['ciphertext'];
    if (typeof ciphertext !== 'string' || !vaultCiphertextPattern.test(ciphertext)) throw this.#unexpected('wrap');
    return `bwrk:vault:${ciphertext}`;
  }

  /** `POST /v1/{mount}/decrypt/{key}` with `ciphertext` and `associated_data`. */
  async unwrap(wrapped: string, context: WrapContext): Promise<Buffer> {
    const aad = wrapAad(context);
    const { ciphertext, version } = parseWrapped(wrapped);
    const answer = await this.#send('unwrap', 'POST', `${this.#mount}/decrypt/${this.#keyName}`, {
      ciphertext,
      associated_data: aad.toString('base64'),
    });
    const plaintext = this.#data('unwrap', answer, version)['plaintext'];
    const decoded = typeof plaintext === 'string' ? decodeCanonicalBase64(plaintext) : undefined;
    if (decoded?.length !== dataKeyBytes) {
      decoded?.fill(0);
      throw new RootKeyError('corrupt', `Vault decrypted the wrapped key, but not to a ${dataKeyBytes}-byte data key`);
    }
    // A non-pooled copy the caller may zero without touching a shared slab.
    const dataKey = Buffer.alloc(dataKeyBytes);
    decoded.copy(dataKey);
    decoded.fill(0);
    return dataKey;
  }

  /**
   * Moves a wrapped key to the transit key's latest version (not in RootKeyProvider). Vault's own
   * `rewrap` endpoint would keep the plaintext inside Vault, but it takes no `associated_data` (Vault and
   * OpenBao both), so it cannot open an AAD-bound wrap; this decrypts and re-encrypts instead, two calls
   * with the same capabilities as unwrap and wrap. The data key is in this process only as long as an
   * unwrap holds it anyway, and is zeroed before returning.
   */
  async rewrap(wrapped: string, context: WrapContext): Promise<string> {
    const dataKey = await this.unwrap(wrapped, context);
    try {
      return await this.wrap(dataKey, context);
    } finally {
      dataKey.fill(0);
    }
  }

  /** `POST /v1/{mount}/keys/{key}/rotate`, then describe. */
  async rotate(): Promise<RootKeyDescription> {
    const answer = await this.#send('rotate', 'POST', `${this.#mount}/keys/${this.#keyName}/rotate`, {});
    this.#data('rotate', answer, undefined, true);
    return this.describe();
  }

  /** `GET /v1/{mount}/keys/{key}`: `latest_version` and `keys` (version → creation time). */
  async describe(): Promise<RootKeyDescription> {
    const answer = await this.#send('describe', 'GET', `${this.#mount}/keys/${this.#keyName}`);
    const data = this.#data('describe', answer);
    const latest = data['latest_version'];
    const keys = data['keys'];
    if (typeof latest !== 'number' || !isRootVersion(latest) || !isObject(keys)) throw this.#unexpected('describe');
    const versions = Object.entries(keys)
      .map(([version, created]) => ({ version: Number(version), createdAt: creationTime(created) }))
      .filter(({ version }) => isRootVersion(version))
      .sort((a, b) => a.version - b.version);
    const namespace = this.#namespace === undefined ? '' : `${this.#namespace}/`;
    return { kind: this.kind, keyName: `${namespace}${this.#mount}/keys/${this.#keyName}`, currentVersion: latest, versions };
  }

  /**
   * `GET /v1/sys/health` (unauthenticated, so the token is not sent): 200 active, 429 standby and 473
   * performance standby count as reachable; sealed, uninitialised or DR secondary do not. It checks that
   * Vault answers, not that the token is still valid: a revoked token shows on the next unwrap as 'denied'.
   */
  async ping(): Promise<void> {
    const answer = await this.#send('ping', 'GET', 'sys/health', undefined, false);
    if (answer.status === 200 || answer.status === 429 || answer.status === 473) return;
    const state: Record<number, string> = { 472: 'a DR secondary', 501: 'not initialised', 503: 'sealed' };
    throw new RootKeyError('unavailable', `Vault at ${this.#base} is not serving (${state[answer.status] ?? `HTTP ${answer.status}`})`);
  }

  async #send(operation: Operation, method: 'GET' | 'POST', path: string, body?: object, authenticated = true): Promise<VaultAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authenticated) {
      headers['x-vault-token'] = this.#token;
      if (this.#namespace !== undefined) headers['x-vault-namespace'] = this.#namespace;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const response = await this.#fetch(`${this.#base}/v1/${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        // A redirect could carry the token to another host: never follow one.
        redirect: 'manual',
        // Covers the body too: a Vault that sends headers and then stalls still times out.
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: response.status, body: parsed, location: response.headers.get('location') };
    } catch (error) {
      if (isObject(error) && error['name'] === 'TimeoutError') {
        throw new RootKeyError('unavailable', `Vault at ${this.#base} did not answer ${operation} within ${this.#timeoutMs} ms`);
      }
      const cause = isObject(error) && isObject(error['cause']) ? error['cause'] : undefined;
      const code = typeof cause?.['code'] === 'string' ? ` (${cause['code']})` : '';
      // The original error is not attached as cause: fetch errors can carry the request, headers included.
      throw new RootKeyError('unavailable', `Vault at ${this.#base} is unreachable for ${operation}${code}`);
    }
  }

  /** The `data` object of a successful answer; otherwise the RootKeyError its status means. */
  #data(operation: Operation, answer: VaultAnswer, wrappedVersion?: number, emptyOk = false): Record<string, unknown> {
    const { status } = answer;
    if (status >= 200 && status < 300) {
      if (isObject(answer.body) && isObject(answer.body['data'])) return answer.body['data'];
      if (emptyOk) return {};
      throw this.#unexpected(operation);
    }
    const said = this.#vaultMessage(answer.body);
    const key = `transit key "${this.#keyName}" at mount "${this.#mount}"`;
    if (status === 401 || status === 403) {
      throw new RootKeyError(
        'denied',
        `Vault refused ${operation} on ${key} (HTTP ${status}): the token was revoked or expired, or its policy does not allow it; access resumes once it is restored`,
      );
    }
    if (status === 429 || status >= 500) {
      throw new RootKeyError('unavailable', `Vault could not serve ${operation} on ${key} (HTTP ${status})${said}`);
    }
    if (status >= 300 && status < 400) {
      throw new RootKeyError(
        'unavailable',
        `Vault redirected ${operation} (HTTP ${status}${answer.location === null ? '' : ` to ${answer.location}`}); point the address at the active node or its load balancer`,
      );
    }
    if (status === 404) {
      throw new RootKeyError('unavailable', `Vault has no ${key} (HTTP 404): check the mount path, key name and namespace`);
    }
    const text = isObject(answer.body) && Array.isArray(answer.body['errors']) ? answer.body['errors'].join('; ') : '';
    if (status === 400 && /encryption key not found|policy not found/i.test(text)) {
      throw new RootKeyError('unavailable', `Vault has no ${key}: create it (type aes256-gcm96) or fix the key name`);
    }
    if (status === 400 && operation === 'unwrap') {
      const version = wrappedVersion === undefined ? '' : ` ${wrappedVersion}`;
      if (/disallowed by policy \(too old\)/i.test(text)) {
        throw new RootKeyError(
          'corrupt',
          `root key version${version} is retired: it is below the min_decryption_version of ${key}; lower min_decryption_version to read keys wrapped with it`,
        );
      }
      if (/too new/i.test(text)) {
        throw new RootKeyError('unknown_version', `${key} has no version${version} (HTTP 400)${said}`);
      }
      throw new RootKeyError(
        'corrupt',
        `Vault could not unwrap the key (HTTP 400): it was altered, or it belongs to another tenant or data key version${said}`,
      );
    }
    throw new RootKeyError('unavailable', `Vault refused ${operation} on ${key} (HTTP ${status})${said}`);
  }

  #vaultMessage(body: unknown): string {
    if (!isObject(body) || !Array.isArray(body['errors'])) return '';
    const text = body['errors']
      .filter((entry): entry is string => typeof entry === 'string')
      .join('; ')
      .slice(0, 300)
      // Belt and braces: a proxy in front of Vault might echo request headers into an error.
      .replaceAll(this.#token, '[redacted]');
    return text === '' ? '' : `: ${text}`;
  }

  #unexpected(operation: Operation): RootKeyError {
    return new RootKeyError('unavailable', `unexpected answer from Vault to ${operation}: is ${this.#base} a Vault or OpenBao server?`);
  }
}

function parseAddress(address: string): string {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new Error('Vault transit: address must be a URL such as https://vault.internal:8200');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('Vault transit: address must be an http or https URL');
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new Error('Vault transit: address must not carry credentials, a query or a fragment');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function parseWrapped(wrapped: string): { ciphertext: string; version: number } {
  if (typeof wrapped !== 'string' || wrapped.length > maxWrappedLength) throw new RootKeyError('corrupt', 'malformed wrapped key');
  const kind = /^bwrk:([a-z-]{1,20}):/.exec(wrapped)?.[1];
  if (kind !== undefined && kind !== 'vault') {
    throw new RootKeyError('corrupt', `the key was wrapped by the "${kind}" root key provider, not "vault"`);
  }
  const ciphertext = wrapped.slice('bwrk:vault:'.length);
  const match = wrapped.startsWith('bwrk:vault:') ? vaultCiphertextPattern.exec(ciphertext) : null;
  if (match === null) throw new RootKeyError('corrupt', 'malformed wrapped key: expected bwrk:vault:vault:v<version>:<base64>');
  const version = Number(match[1]);
  if (!isRootVersion(version)) throw new RootKeyError('corrupt', 'malformed wrapped key: bad version');
  return { ciphertext, version };
}

/** Vault has answered creation times as unix seconds, RFC 3339 strings, or objects with `creation_time`. */
function creationTime(value: unknown): string | null {
  const raw = isObject(value) ? value['creation_time'] : value;
  const millis =
    typeof raw === 'number' ? raw * 1000 : typeof raw === 'string' ? (/^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw)) : Number.NaN;
  const date = new Date(millis);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
