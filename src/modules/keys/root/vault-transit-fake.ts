import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { secretsEqual } from '../../../platform/secret-compare.ts';

/**
 * A small stand-in for a Vault / OpenBao transit secrets engine, for tests. It serves on 127.0.0.1 exactly
 * the calls VaultTransitRootKey makes (docs/root-keys.md), with real AES-256-GCM keys per version, Vault's
 * ciphertext format `vault:v<N>:<base64(nonce | ciphertext | tag)>`, `associated_data` as AAD, token and
 * namespace checks, `min_decryption_version`, and Vault's status codes and error strings. Like Vault, its
 * `rewrap` takes no `associated_data`.
 */
export interface FakeVaultOptions {
  token: string;
  keyName: string;
  mountPath?: string;
  /** When set, requests must carry it as X-Vault-Namespace (the token belongs to that namespace). */
  namespace?: string;
  /** How `GET keys/{key}` reports creation times: unix seconds (older Vault) or RFC 3339. Default unix. */
  creationTimeFormat?: 'unix' | 'rfc3339';
}

/** `unavailable`: every call answers 503 (sealed). `hang`: requests are read but never answered. */
export type FakeVaultMode = 'normal' | 'unavailable' | 'hang';

/** What the fake saw; the token itself is not recorded, only whether one was sent. */
export interface FakeVaultRequest {
  method: string;
  path: string;
  sentToken: boolean;
  namespace: string | undefined;
  body: Record<string, unknown> | undefined;
}

const tooOld = 'ciphertext or signature version is disallowed by policy (too old)';
const maxBody = 1024 * 1024;

export class FakeVaultTransit {
  readonly address: string;
  readonly requests: FakeVaultRequest[] = [];
  mode: FakeVaultMode = 'normal';
  /** Answer sys/health as a standby node (429). */
  standby = false;
  readonly #server: Server;
  readonly #options: Required<Omit<FakeVaultOptions, 'namespace'>> & { namespace: string | undefined };
  readonly #versions: { key: Buffer; created: Date }[] = [];
  #minDecryptionVersion = 1;
  #revoked = false;

  private constructor(server: Server, options: FakeVaultOptions) {
    this.#server = server;
    this.#options = {
      token: options.token,
      keyName: options.keyName,
      mountPath: options.mountPath ?? 'transit',
      namespace: options.namespace,
      creationTimeFormat: options.creationTimeFormat ?? 'unix',
    };
    const { port } = server.address() as AddressInfo;
    this.address = `http://127.0.0.1:${port}`;
    this.rotate();
  }

  static async start(options: FakeVaultOptions): Promise<FakeVaultTransit> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const fake = new FakeVaultTransit(server, options);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      fake.#handle(request, response).catch(() => response.destroy());
    });
    return fake;
  }

  get latestVersion(): number {
    return this.#versions.length;
  }

  get minDecryptionVersion(): number {
    return this.#minDecryptionVersion;
  }

  /** Like `vault write transit/keys/<key>/config min_decryption_version=<n>`. */
  set minDecryptionVersion(version: number) {
    if (!Number.isInteger(version) || version < 1 || version > this.latestVersion) throw new RangeError('min_decryption_version out of range');
    this.#minDecryptionVersion = version;
  }

  /** The customer revokes Bulwark's token: every authenticated call answers 403 until `restore()`. */
  revoke(): void {
    this.#revoked = true;
  }

  restore(): void {
    this.#revoked = false;
  }

  /** A rotation made on the Vault side (operator or auto_rotate_period), not through Bulwark. */
  rotate(): void {
    this.#versions.push({ key: randomBytes(32), created: new Date() });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    // Hung requests would otherwise keep the server open forever.
    this.#server.closeAllConnections();
    await closed;
    for (const { key } of this.#versions) key.fill(0);
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBody) return send(response, 413, { errors: ['request too large'] });
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let body: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = text === '' ? undefined : JSON.parse(text);
      body = isObject(parsed) ? parsed : undefined;
    } catch {
      return send(response, 400, { errors: ['failed to parse JSON input'] });
    }
    const path = new URL(request.url ?? '/', 'http://fake').pathname;
    const namespace = header(request, 'x-vault-namespace');
    const token = header(request, 'x-vault-token');
    const method = request.method ?? 'GET';
    this.requests.push({ method, path, sentToken: token !== undefined, namespace, body });

    if (this.mode === 'hang') return;
    if (this.mode === 'unavailable') return send(response, 503, { errors: ['Vault is sealed'] });

    if (path === '/v1/sys/health' && method === 'GET') {
      return send(response, this.standby ? 429 : 200, { initialized: true, sealed: false, standby: this.standby, version: 'fake' });
    }

    const authorized =
      token !== undefined && !this.#revoked && secretsEqual(token, this.#options.token) && namespace === this.#options.namespace;
    if (!authorized) return send(response, 403, { errors: ['permission denied'] });

    const prefix = `/v1/${this.#options.mountPath}/`;
    if (!path.startsWith(prefix)) return send(response, 404, { errors: [`no handler for route "${path.slice(4)}"`] });
    const route = path.slice(prefix.length);
    const write = method === 'POST' || method === 'PUT';
    const [operation, name, extra] = route.split('/');
    const isOurKey = name === this.#options.keyName;

    if (write && (operation === 'encrypt' || operation === 'decrypt' || operation === 'rewrap') && extra === undefined) {
      if (!isOurKey) return send(response, 400, { errors: ['encryption key not found'] });
      if (operation === 'encrypt') return this.#encrypt(response, body);
      if (operation === 'decrypt') return this.#decrypt(response, body);
      return this.#rewrap(response, body);
    }
    if (operation === 'keys' && isOurKey && extra === undefined && method === 'GET') return send(response, 200, { data: this.#keyInfo() });
    if (operation === 'keys' && isOurKey && extra === 'rotate' && write) {
      this.rotate();
      return send(response, 200, { data: this.#keyInfo() });
    }
    if (operation === 'keys' && !isOurKey) return send(response, 404, { errors: [] });
    return send(response, 405, { errors: ['unsupported operation'] });
  }

  #encrypt(response: ServerResponse, body: Record<string, unknown> | undefined): void {
    const plaintext = decodeBase64(body?.['plaintext']);
    if (plaintext === undefined) return send(response, 400, { errors: ['missing or invalid plaintext to encrypt'] });
    const aad = body?.['associated_data'] === undefined || body['associated_data'] === '' ? undefined : decodeBase64(body['associated_data']);
    if (aad === undefined && body?.['associated_data'] !== undefined && body['associated_data'] !== '') {
      return send(response, 400, { errors: ['invalid associated_data'] });
    }
    send(response, 200, { data: { ciphertext: this.#seal(plaintext, aad), key_version: this.latestVersion } });
  }

  #decrypt(response: ServerResponse, body: Record<string, unknown> | undefined): void {
    const aad = body?.['associated_data'] === undefined || body['associated_data'] === '' ? undefined : decodeBase64(body['associated_data']);
    const opened = this.#open(body?.['ciphertext'], aad);
    if (typeof opened === 'string') return send(response, 400, { errors: [opened] });
    send(response, 200, { data: { plaintext: opened.toString('base64') } });
  }

  // Vault's rewrap has no associated_data parameter (unknown fields are ignored): it opens and seals
  // without AAD, exactly like the real engine.
  #rewrap(response: ServerResponse, body: Record<string, unknown> | undefined): void {
    const opened = this.#open(body?.['ciphertext'], undefined);
    if (typeof opened === 'string') return send(response, 400, { errors: [opened] });
    send(response, 200, { data: { ciphertext: this.#seal(opened, undefined), key_version: this.latestVersion } });
  }

  #seal(plaintext: Buffer, aad: Buffer | undefined): string {
    const version = this.latestVersion;
    const { key } = this.#versions[version - 1] ?? this.#missing();
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    if (aad !== undefined) cipher.setAAD(aad);
    const sealed = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return `vault:v${version}:${sealed.toString('base64')}`;
  }

  /** The plaintext, or Vault's error message. */
  #open(ciphertext: unknown, aad: Buffer | undefined): Buffer | string {
    if (typeof ciphertext !== 'string' || ciphertext === '') return 'missing ciphertext to decrypt';
    const match = /^vault:v(\d+):(.*)$/.exec(ciphertext);
    if (match === null) return 'invalid ciphertext: no prefix';
    const version = Number(match[1]);
    if (version > this.latestVersion) return 'invalid ciphertext: version is too new';
    if (version < this.#minDecryptionVersion) return tooOld;
    const sealed = decodeBase64(match[2]);
    if (sealed === undefined) return 'invalid ciphertext: could not decode base64';
    if (sealed.length < 12 + 16) return 'invalid ciphertext length';
    const { key } = this.#versions[version - 1] ?? this.#missing();
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
      if (aad !== undefined) decipher.setAAD(aad);
      decipher.setAuthTag(sealed.subarray(sealed.length - 16));
      return Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
    } catch {
      return 'invalid ciphertext: unable to decrypt';
    }
  }

  #keyInfo(): Record<string, unknown> {
    const keys: Record<string, number | string> = {};
    // Like Vault, only the working set (versions from min_decryption_version up) is listed.
    this.#versions.forEach(({ created }, index) => {
      const version = index + 1;
      if (version < this.#minDecryptionVersion) return;
      keys[String(version)] = this.#options.creationTimeFormat === 'unix' ? Math.floor(created.getTime() / 1000) : created.toISOString();
    });
    return {
      name: this.#options.keyName,
      type: 'aes256-gcm96',
      latest_version: this.latestVersion,
      min_decryption_version: this.#minDecryptionVersion,
      min_encryption_version: 0,
      deletion_allowed: false,
      supports_encryption: true,
      supports_decryption: true,
      keys,
    };
  }

  #missing(): never {
    throw new Error('unreachable: every version up to latest has a key');
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function decodeBase64(value: unknown): Buffer | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) return undefined;
  return Buffer.from(value, 'base64');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
