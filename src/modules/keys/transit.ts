import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { EnvelopeError, type EnvelopeContext, fromTransitText, toTransitText } from './envelope.ts';
import type { DecryptBody, EncryptBody } from './schemas.ts';
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
 * the first bad item fails the request with its index, and nothing is returned for the others.
 */
export class TransitService {
  readonly #keyring: KeyringService;

  constructor(keyring: KeyringService) {
    this.#keyring = keyring;
  }

  encrypt(tenantId: string, body: EncryptBody): Promise<{ items: { ciphertext: string; keyVersion: number }[] }> {
    return this.#keyring.withKeys(tenantId, (keys) => ({
      items: body.items.map((item) => {
        const { ciphertext, keyVersion } = keys.seal(decodeBase64(item.plaintext), transitContext(tenantId, item.context));
        return { ciphertext: toTransitText(ciphertext), keyVersion };
      }),
    }));
  }

  decrypt(tenantId: string, body: DecryptBody): Promise<{ items: { plaintext: string }[] }> {
    return this.#keyring.withKeys(tenantId, (keys) => ({
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
    return this.#keyring.withKeys(tenantId, (keys) => ({
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
