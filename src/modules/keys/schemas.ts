import { Type, type Static } from 'typebox';

export const maxTransitBatch = 100;
/** 64 KiB of plaintext per item (base64 inflates by 4/3); transit is for secrets and keys, not files. */
const maxPlaintextBase64 = 87_384;
const maxContextBase64 = 1_368;
const maxCiphertextText = 87_600;

const base64 = (maxLength: number, description: string) =>
  Type.String({ maxLength, pattern: '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$', description });

const context = Type.Optional(
  base64(maxContextBase64, 'Optional caller context (base64, up to 1 KiB): bound as associated data; decrypt needs the same value.'),
);

const items = <T extends Parameters<typeof Type.Array>[0]>(item: T) =>
  Type.Object({ items: Type.Array(item, { minItems: 1, maxItems: maxTransitBatch }) }, { additionalProperties: false });

export const encryptBody = items(
  Type.Object({ plaintext: base64(maxPlaintextBase64, 'Data to encrypt, base64 (up to 64 KiB decoded).'), context }, { additionalProperties: false }),
);
export const decryptBody = items(
  Type.Object(
    { ciphertext: Type.String({ minLength: 1, maxLength: maxCiphertextText, description: '`bulwark:v<N>:...` as returned by encrypt.' }), context },
    { additionalProperties: false },
  ),
);
export type EncryptBody = Static<typeof encryptBody>;
export type DecryptBody = Static<typeof decryptBody>;

export const ciphertextResult = Type.Object({
  items: Type.Array(Type.Object({ ciphertext: Type.String(), keyVersion: Type.Integer() })),
});
export const plaintextResult = Type.Object({ items: Type.Array(Type.Object({ plaintext: Type.String({ description: 'base64' }) })) });

const keyVersionInfo = Type.Object({
  version: Type.Integer(),
  state: Type.Union([Type.Literal('current'), Type.Literal('active'), Type.Literal('retired'), Type.Literal('destroyed')]),
  createdAt: Type.String({ format: 'date-time' }),
  destroyedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  records: Type.Integer({ description: 'Records sealed with this version.' }),
  sealedRows: Type.Integer({ description: 'Everything stored sealed with this version: records, user PII and any other encrypted column.' }),
  encryptions: Type.Integer({ description: 'Encryptions made with this version (may lag by one key cache lifetime).' }),
});

export const keyringInfo = Type.Object({
  currentVersion: Type.Integer({ description: 'The version new writes use.' }),
  minDecryptionVersion: Type.Integer({ description: 'Versions below this no longer decrypt.' }),
  rotationPeriodDays: Type.Union([Type.Integer(), Type.Null()], { description: 'Automatic rotation age; null: on request only.' }),
  rotationEncryptions: Type.Union([Type.Integer(), Type.Null()], {
    description: "The tenant's automatic rotation count; null: the platform limit.",
  }),
  effectiveRotationEncryptions: Type.Integer({ description: 'The current version rotates once it has made this many encryptions.' }),
  customerManaged: Type.Boolean({ description: 'The data keys are also wrapped by a customer-managed key (BYOK).' }),
  destroyedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  versions: Type.Array(keyVersionInfo),
  unencryptedRecords: Type.Integer({
    description: 'Records stored without encryption: Bulwark never writes them, so each is a sign of tampering (or a foreign restore); reads refuse them.',
  }),
  reencrypting: Type.Boolean({ description: 'A re-encryption job for this tenant is running on this instance.' }),
});

export const keyringSettingsBody = Type.Object(
  {
    minDecryptionVersion: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    rotationPeriodDays: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 3650 }), Type.Null()])),
    rotationEncryptions: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 2 ** 31 }), Type.Null()], {
        description: 'Rotate automatically after this many encryptions (at most 2^31, the platform limit); null: the platform limit.',
      }),
    ),
    force: Type.Optional(Type.Boolean({ description: 'Retire versions that records still use (those records become unreadable).' })),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const rootKeyInfo = Type.Object({
  kind: Type.String(),
  keyName: Type.String(),
  currentVersion: Type.Integer(),
  versions: Type.Array(Type.Object({ version: Type.Integer(), createdAt: Type.Union([Type.String(), Type.Null()]) })),
});

export const rootRotationResult = Type.Object({
  rootVersion: Type.Integer({ description: 'The root key version every data key is now wrapped with.' }),
  rotated: Type.Boolean({
    description: 'false for a provider that cannot add a version itself (env): the keys were only re-wrapped under its current version.',
  }),
  tenants: Type.Integer(),
  keysRewrapped: Type.Integer({ description: 'Tenant data keys re-wrapped.' }),
  platformKeysRewrapped: Type.Integer({ description: 'Platform keys (e.g. the one sealing operator PII) re-wrapped.' }),
});

const vaultPath = (description: string) => Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$', description });

export const customerKeyBody = Type.Object(
  {
    provider: Type.Literal('vault-transit', { description: 'The KMS API: HashiCorp Vault or OpenBao transit.' }),
    address: Type.String({ minLength: 8, maxLength: 512, description: 'KMS origin, e.g. `https://vault.example.com:8200`; the platform must allow it.' }),
    token: Type.String({
      minLength: 1,
      maxLength: 2048,
      pattern: '^[\\x21-\\x7e]+$',
      description: 'Token with `update` on `<mount>/encrypt/<key>` and `<mount>/decrypt/<key>`. Stored sealed, never returned.',
    }),
    mountPath: Type.Optional(vaultPath('Transit mount path; default `transit`.')),
    keyName: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$', description: 'Transit key (type aes256-gcm96).' }),
    namespace: Type.Optional(vaultPath('Vault Enterprise / OpenBao namespace.')),
  },
  { additionalProperties: false },
);
export type CustomerKeyBody = Static<typeof customerKeyBody>;

export const customerKeyInfo = Type.Object({
  provider: Type.Literal('vault-transit'),
  address: Type.String(),
  mountPath: Type.String(),
  keyName: Type.String(),
  namespace: Type.Union([Type.String(), Type.Null()]),
  configuredAt: Type.String({ format: 'date-time' }),
});
