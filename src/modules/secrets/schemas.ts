import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { tenantId } from '../tenancy/schemas.ts';
import { sealedSecretFormat } from './sealing.ts';

/** The largest secret value, in bytes of UTF-8. */
export const secretValueMaxBytes = 64 * 1024;
export const maxReaders = 20;

export const serviceId = Type.String({ pattern: idPattern, description: 'Service id: 12 lowercase hex characters.' });
export const serviceParams = Type.Object({ serviceId }, { additionalProperties: false });

const serviceName = Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$', description: 'Lowercase letters, digits and dashes, e.g. `replicator`; unique among active services.' });
export const secretName = Type.String({
  pattern: '^[a-z][a-z0-9_.-]{0,62}$',
  description: 'Lowercase letters, digits, `_`, `.` and `-`, starting with a letter, at most 63 characters (e.g. `aws-credentials`).',
});
export const secretParams = Type.Object({ tenantId, secretName }, { additionalProperties: false });

export const registerServiceBody = Type.Object(
  {
    name: serviceName,
    publicKey: Type.String({
      minLength: 43,
      maxLength: 512,
      description: 'The X25519 public key the service opens its secrets with: base64url of the raw 32 bytes, or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`). `bulwark service keygen` makes one.',
    }),
  },
  { additionalProperties: false },
);
export type RegisterServiceBody = Static<typeof registerServiceBody>;

export const service = Type.Object({
  id: Type.String(),
  name: Type.String(),
  publicKey: Type.String({ description: 'base64url of the raw 32-byte X25519 public key.' }),
  status: Type.Union([Type.Literal('active'), Type.Literal('retired')]),
  createdAt: Type.String({ format: 'date-time' }),
  retiredAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export type Service = Static<typeof service>;

export const registeredService = Type.Object({
  ...service.properties,
  credential: Type.String({ description: 'The service credential (`bwsv_...`), shown once: the service sends it as `Authorization: Bearer` to read its sealed copies.' }),
});

export const putSecretBody = Type.Object(
  {
    value: Type.String({
      minLength: 1,
      maxLength: secretValueMaxBytes,
      description: 'The secret, at most 64 KiB of UTF-8. Sealed to each reader and never stored, returned or logged.',
    }),
    readers: Type.Array(serviceId, {
      minItems: 1,
      maxItems: maxReaders,
      uniqueItems: true,
      description: 'The services that may read this version (1-20), each registered and active. Only they get a sealed copy.',
    }),
  },
  { additionalProperties: false },
);
export type PutSecretBody = Static<typeof putSecretBody>;

const readers = Type.Array(Type.String(), { description: 'Service ids holding a sealed copy.' });

export const secretSummary = Type.Object({
  name: Type.String(),
  currentVersion: Type.Integer(),
  readers: Type.Array(Type.String(), { description: "The current version's readers (service ids)." }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type SecretSummary = Static<typeof secretSummary>;

export const secretMetadata = Type.Object({
  ...secretSummary.properties,
  versions: Type.Array(Type.Object({ version: Type.Integer(), createdAt: Type.String({ format: 'date-time' }), readers }), {
    description: 'Newest first; the 10 newest versions are kept.',
  }),
});
export type SecretMetadata = Static<typeof secretMetadata>;

export const secretPageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Items per page (1-200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 128, description: 'The `nextCursor` of the previous page.' })),
  },
  { additionalProperties: false },
);

export const secretPage = Type.Object({
  items: Type.Array(secretSummary),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page.' }),
});

export const sealedCopyParams = Type.Object({ serviceId, tenantId, secretName }, { additionalProperties: false });
export const sealedCopyQuery = Type.Object(
  { version: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'A kept version; default the current one.' })) },
  { additionalProperties: false },
);

export const sealedSecret = Type.Object({
  format: Type.Literal(sealedSecretFormat),
  tenantId: Type.String(),
  name: Type.String(),
  version: Type.Integer(),
  serviceId: Type.String(),
  algorithm: Type.Object(
    { mode: Type.Literal('base'), kemId: Type.Literal(0x0020), kdfId: Type.Literal(0x0001), aeadId: Type.Literal(0x0002) },
    { description: 'HPKE (RFC 9180): base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.' },
  ),
  enc: Type.String({ description: 'The HPKE encapsulated key, base64url.' }),
  ciphertext: Type.String({ description: 'The HPKE ciphertext, base64url.' }),
  createdAt: Type.String({ format: 'date-time' }),
});
export type SealedSecret = Static<typeof sealedSecret>;
