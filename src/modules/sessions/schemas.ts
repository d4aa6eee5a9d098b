import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { permission } from '../access/schemas.ts';
import { tenantId } from '../tenancy/schemas.ts';

export const apiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String(), { description: 'The permissions the key may use.' }),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Last successful use, to the minute.' }),
});
export type ApiKey = Static<typeof apiKey>;

export const createdApiKey = Type.Object({
  ...apiKey.properties,
  key: Type.String({ description: 'The key itself (`bwk_...`). Shown once; only its hash is stored.' }),
});

export const createApiKeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' }),
    expiresAt: Type.Optional(Type.String({ format: 'date-time', maxLength: 40, description: 'Must lie in the future.' })),
    scopes: Type.Optional(
      Type.Array(permission, {
        minItems: 1,
        maxItems: 100,
        uniqueItems: true,
        description: "The permissions the key may use: a subset of the creator's (403 otherwise). Default: all of the creator's.",
      }),
    ),
  },
  { additionalProperties: false },
);

export const apiKeyParams = Type.Object(
  { tenantId, keyId: Type.String({ pattern: idPattern, description: 'API key id.' }) },
  { additionalProperties: false },
);
