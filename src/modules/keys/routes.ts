import { Type } from 'typebox';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import {
  ciphertextResult,
  customerKeyBody,
  customerKeyInfo,
  decryptBody,
  encryptBody,
  keyringInfo,
  keyringSettingsBody,
  plaintextResult,
  rootKeyInfo,
  rootRotationResult,
} from './schemas.ts';
import type { KeyringService } from './service.ts';
import type { TransitService } from './transit.ts';

const keyTags = ['keys'];
const transitTags = ['transit'];

/**
 * `transitBodyLimit`: transit batches may use the whole request body limit (most routes get a small one).
 * A batch spends one unit of the tenant's `crypto` rate bucket per item.
 */
export const keysRoutes: RoutePlugin<{ keyring: KeyringService; transit: TransitService; transitBodyLimit: number }> = async (app, { keyring, transit, transitBodyLimit }) => {
  // The flag is read before the counts: a job that ends while they are read then still shows as running, so
  // "not re-encrypting" always comes with counts taken after the job's last batch committed.
  const describe = async (tenantId: string) => {
    const reencrypting = keyring.isReencrypting(tenantId);
    return { ...(await keyring.describe(tenantId)), reencrypting };
  };

  app.get(
    '/v1/tenants/:tenantId/keys',
    {
      config: { auth: 'tenant', permission: 'keys:read' },
      schema: {
        tags: keyTags,
        summary: "The tenant's data key versions",
        description: 'Versions, states, dates and how many records each version sealed. Never key material.',
        params: tenantParams,
        response: { 200: keyringInfo },
      },
    },
    async (request) => describe(request.params.tenantId),
  );

  app.post(
    '/v1/tenants/:tenantId/keys/rotate',
    {
      config: { auth: 'tenant', permission: 'keys:rotate' },
      schema: {
        tags: keyTags,
        summary: 'Rotate the data key',
        description: 'Creates a new version for new writes; older versions keep decrypting. Re-encrypt to move existing data.',
        params: tenantParams,
        response: { 200: keyringInfo },
      },
    },
    async (request) => {
      await keyring.rotate(request.params.tenantId);
      return describe(request.params.tenantId);
    },
  );

  app.patch(
    '/v1/tenants/:tenantId/keys',
    {
      config: { auth: 'tenant', permission: 'keys:rotate' },
      schema: {
        tags: keyTags,
        summary: 'Key hygiene settings',
        description:
          '`minDecryptionVersion` retires older versions (refused with 409 while records still use them, unless `force`); `rotationPeriodDays` and `rotationEncryptions` rotate automatically once the current version is that old or has made that many encryptions.',
        params: tenantParams,
        body: keyringSettingsBody,
        response: { 200: keyringInfo },
      },
    },
    async (request) => {
      await keyring.configure(request.params.tenantId, request.body);
      return describe(request.params.tenantId);
    },
  );

  app.post(
    '/v1/tenants/:tenantId/keys/reencrypt',
    {
      config: { auth: 'tenant', permission: 'keys:rotate' },
      schema: {
        tags: keyTags,
        summary: 'Re-encrypt stored data under the current version',
        description: 'Starts a background job (202); follow progress in GET .../keys (records per version).',
        params: tenantParams,
        response: { 202: keyringInfo },
      },
    },
    async (request, reply) => {
      await keyring.startReencryption(request.params.tenantId);
      return reply.code(202).send(await describe(request.params.tenantId));
    },
  );

  app.post(
    '/v1/tenants/:tenantId/keys/trim',
    {
      config: { auth: 'tenant', permission: 'keys:rotate' },
      schema: {
        tags: keyTags,
        summary: 'Destroy retired key versions',
        description: 'Deletes the key material of versions below minDecryptionVersion. Irreversible.',
        params: tenantParams,
        response: { 200: Type.Object({ trimmedVersions: Type.Array(Type.Integer()) }) },
      },
    },
    async (request) => keyring.trim(request.params.tenantId),
  );

  const customerKeyTags = { tags: keyTags, params: tenantParams };

  app.get(
    '/v1/tenants/:tenantId/keys/customer-key',
    {
      config: { auth: 'tenant', permission: 'keys:customer-key' },
      schema: {
        ...customerKeyTags,
        summary: 'The customer-managed key (BYOK)',
        description: 'Where the customer KMS key is (never the token); 404 when the tenant has none.',
        response: { 200: customerKeyInfo },
      },
    },
    async (request) => keyring.customerKey(request.params.tenantId),
  );

  app.put(
    '/v1/tenants/:tenantId/keys/customer-key',
    {
      config: { auth: 'tenant', permission: 'keys:customer-key' },
      schema: {
        ...customerKeyTags,
        summary: 'Put the data keys under a customer-managed key',
        description:
          "Each data key version is split into a share wrapped by the root key and a share wrapped by the customer's Vault / OpenBao transit key; both are needed to read the tenant's data, so revoking the customer key makes it unreadable (423 customer_key_access_denied) until access is restored. A test wrap runs first (422 customer_key_rejected when it fails). Replacing a customer key needs the previous one to work. The data is not re-encrypted.",
        body: customerKeyBody,
        response: { 200: customerKeyInfo },
      },
    },
    async (request) => {
      const { provider, address, token, keyName } = request.body;
      return keyring.setCustomerKey(request.params.tenantId, {
        provider,
        address,
        token,
        keyName,
        mountPath: request.body.mountPath ?? 'transit',
        namespace: request.body.namespace ?? null,
      });
    },
  );

  app.delete(
    '/v1/tenants/:tenantId/keys/customer-key',
    {
      config: { auth: 'tenant', permission: 'keys:customer-key' },
      schema: {
        ...customerKeyTags,
        summary: 'Remove the customer-managed key',
        description: "The data keys go back to being wrapped by the root key alone; needs the customer's KMS to work one last time.",
        response: { 204: Type.Null({ description: 'Removed.' }) },
      },
    },
    async (request, reply) => {
      await keyring.removeCustomerKey(request.params.tenantId);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/keys/root',
    {
      config: { auth: 'operator', permission: 'platform:root-key:read' },
      schema: { tags: keyTags, summary: 'The root key', description: 'Provider, key name and versions; never key material.', response: { 200: rootKeyInfo } },
    },
    async () => keyring.describeRoot(),
  );

  app.post(
    '/v1/keys/root/rotate',
    {
      config: { auth: 'operator', permission: 'platform:root-key:rotate' },
      schema: {
        tags: keyTags,
        summary: 'Rotate the root key',
        description:
          'New root key version, then every tenant data key is re-wrapped under it. Data is not touched. With the env provider, add the new version to BULWARK_ROOT_KEY and restart first: this call then only re-wraps (`rotated: false`).',
        response: { 200: rootRotationResult },
      },
    },
    async () => keyring.rotateRoot(),
  );

  const transitSchema = { tags: transitTags, params: tenantParams };
  const transitLimit = { bucket: 'crypto' as const, cost: (request: { body: unknown }) => (request.body as { items: unknown[] }).items.length };

  app.post(
    '/v1/tenants/:tenantId/crypto/encrypt',
    {
      config: { auth: 'tenant', permission: 'crypto:encrypt', rateLimit: transitLimit },
      bodyLimit: transitBodyLimit,
      schema: {
        ...transitSchema,
        summary: 'Encrypt with the tenant key',
        description: 'Up to 100 items of base64 plaintext (64 KiB each); returns `bulwark:v<N>:...` ciphertexts.',
        body: encryptBody,
        response: { 200: ciphertextResult },
      },
    },
    async (request) => transit.encrypt(request.params.tenantId, request.body),
  );

  app.post(
    '/v1/tenants/:tenantId/crypto/decrypt',
    {
      config: { auth: 'tenant', permission: 'crypto:decrypt', rateLimit: transitLimit },
      bodyLimit: transitBodyLimit,
      schema: {
        ...transitSchema,
        summary: 'Decrypt with the tenant key',
        description: 'All or nothing: the first bad item answers 400 invalid_ciphertext (or 409 key_version_retired) with its index.',
        body: decryptBody,
        response: { 200: plaintextResult },
      },
    },
    async (request) => transit.decrypt(request.params.tenantId, request.body),
  );

  app.post(
    '/v1/tenants/:tenantId/crypto/rewrap',
    {
      config: { auth: 'tenant', permission: 'crypto:rewrap', rateLimit: transitLimit },
      bodyLimit: transitBodyLimit,
      schema: {
        ...transitSchema,
        summary: 'Move ciphertexts to the current key version',
        description: 'Decrypts and re-encrypts inside the server; the plaintext is never returned.',
        body: decryptBody,
        response: { 200: ciphertextResult },
      },
    },
    async (request) => transit.rewrap(request.params.tenantId, request.body),
  );
};
