import { Type } from 'typebox';
import type { RoutePlugin } from '../../platform/http/route-kit.ts';
import { tenantParams } from '../tenancy/schemas.ts';
import {
  ciphertextResult,
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

export const keysRoutes: RoutePlugin<{ keyring: KeyringService; transit: TransitService }> = async (app, { keyring, transit }) => {
  const describe = async (tenantId: string) => ({ ...(await keyring.describe(tenantId)), reencrypting: keyring.isReencrypting(tenantId) });

  app.get(
    '/v1/tenants/:tenantId/keys',
    {
      config: { auth: 'tenant' },
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
      config: { auth: 'tenant' },
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
      config: { auth: 'tenant' },
      schema: {
        tags: keyTags,
        summary: 'Key hygiene settings',
        description:
          '`minDecryptionVersion` retires older versions (refused with 409 while records still use them, unless `force`); `rotationPeriodDays` rotates automatically once the current version is that old.',
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
      config: { auth: 'tenant' },
      schema: {
        tags: keyTags,
        summary: 'Re-encrypt stored data under the current version',
        description: 'Starts a background job (202); follow progress in GET .../keys (records per version).',
        params: tenantParams,
        response: { 202: keyringInfo },
      },
    },
    async (request, reply) => {
      keyring.startReencryption(request.params.tenantId);
      return reply.code(202).send(await describe(request.params.tenantId));
    },
  );

  app.post(
    '/v1/tenants/:tenantId/keys/trim',
    {
      config: { auth: 'tenant' },
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

  app.get(
    '/v1/keys/root',
    {
      config: { auth: 'operator' },
      schema: { tags: keyTags, summary: 'The root key', description: 'Provider, key name and versions; never key material.', response: { 200: rootKeyInfo } },
    },
    async () => keyring.describeRoot(),
  );

  app.post(
    '/v1/keys/root/rotate',
    {
      config: { auth: 'operator' },
      schema: {
        tags: keyTags,
        summary: 'Rotate the root key',
        description: 'New root key version, then every tenant data key is re-wrapped under it. Data is not touched.',
        response: { 200: rootRotationResult },
      },
    },
    async () => keyring.rotateRoot(),
  );

  const transitSchema = { tags: transitTags, params: tenantParams };

  app.post(
    '/v1/tenants/:tenantId/crypto/encrypt',
    {
      config: { auth: 'tenant' },
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
      config: { auth: 'tenant' },
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
      config: { auth: 'tenant' },
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
