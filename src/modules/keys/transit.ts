import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { EnvelopeError, type EnvelopeContext, fromTransitText, toTransitText } from './envelope.ts';
import type { DecryptBody, EncryptBody } from './schemas.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { KeyringService, TenantKeys } from './service.ts';

/** The schemas admit only canonical base64, so decoding cannot silently drop characters. */
function decodeBase64(value: string): Buffer {
  return Buffer.from(value, 'base64');
}

function transitContext(tenantId: string, context: string | undefined): EnvelopeContext {
  return { tenantId, table: 'transit', column: 'transit', rowId: '', ...(context === undefined ? {} : { extra: decodeBase64(context) }) };
}

/**
 * Encryption as a service with the tenant's data keys (Vault transit-like). Batches are all or nothing:
 * the first bad item fails the request with its index, and nothing is returned for the others. Every call is
 * audited before its answer leaves (a failed decryption too: it may be someone probing): no audit event, no
 * answer.
 */
export class TransitService {
  readonly #keyring: KeyringService;
  readonly #audit: AuditRecorder;

  constructor(keyring: KeyringService, audit: AuditRecorder) {
    this.#keyring = keyring;
    this.#audit = audit;
  }

  encrypt(tenantId: string, body: EncryptBody): Promise<{ items: { ciphertext: string; keyVersion: number }[] }> {
    return this.#audited(tenantId, 'crypto.encrypt', body.items.length, (keys) => ({
      items: body.items.map((item) => {
        const { ciphertext, keyVersion } = keys.seal(decodeBase64(item.plaintext), transitContext(tenantId, item.context));
        return { ciphertext: toTransitText(ciphertext), keyVersion };
      }),
    }));
  }

  decrypt(tenantId: string, body: DecryptBody): Promise<{ items: { plaintext: string }[] }> {
    return this.#audited(tenantId, 'crypto.decrypt', body.items.length, (keys) => ({
      items: body.items.map((item, index) => {
        const plaintext = openItem(keys, tenantId, item, index);
        try {
          return { plaintext: plaintext.toString('base64') };
        } finally {
          plaintext.fill(0);
        }
      }),
    }));
  }

  /** Re-seals under the current version without the plaintext leaving the server. */
  rewrap(tenantId: string, body: DecryptBody): Promise<{ items: { ciphertext: string; keyVersion: number }[] }> {
    return this.#audited(tenantId, 'crypto.rewrap', body.items.length, (keys) => ({
      items: body.items.map((item, index) => {
        const plaintext = openItem(keys, tenantId, item, index);
        try {
          const { ciphertext, keyVersion } = keys.seal(plaintext, transitContext(tenantId, item.context));
          return { ciphertext: toTransitText(ciphertext), keyVersion };
        } finally {
          plaintext.fill(0);
        }
      }),
    }));
  }

  async #audited<T>(tenantId: string, action: 'crypto.encrypt' | 'crypto.decrypt' | 'crypto.rewrap', items: number, work: (keys: TenantKeys) => T): Promise<T> {
    const target = { type: 'keyring', id: tenantId };
    let result: T;
    try {
      result = await this.#keyring.withKeys(tenantId, work);
    } catch (error) {
      if (error instanceof BulwarkError && (error.code === 'invalid_ciphertext' || error.code === 'key_version_retired')) {
        await this.#audit.recordAlone({ tenantId }, { action, target, outcome: 'failure', detail: { items, reason: error.code, item: error.extensions?.['item'] ?? null } });
      }
      throw error;
    }
    await this.#audit.recordAlone({ tenantId }, { action, target, detail: { items } });
    return result;
  }
}

/** Opens one batch item; a failure names the item's index so the caller can find it. */
function openItem(keys: TenantKeys, tenantId: string, item: DecryptBody['items'][number], index: number): Buffer {
  try {
    return keys.open(fromTransitText(item.ciphertext), transitContext(tenantId, item.context), 'invalid_ciphertext');
  } catch (error) {
    if (error instanceof EnvelopeError) throw new BulwarkError('invalid_ciphertext', { cause: error, extensions: { item: index } });
    if (error instanceof BulwarkError && (error.code === 'invalid_ciphertext' || error.code === 'key_version_retired')) {
      throw new BulwarkError(error.code, { cause: error, extensions: { item: index } });
    }
    throw error;
  }
}
