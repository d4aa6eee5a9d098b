import { Type } from 'typebox';
import { user } from '../identity/schemas.ts';
import { operator } from '../operators/schemas.ts';
import { tenantId } from '../tenancy/schemas.ts';
import { anyJsonObject } from '../../platform/http/route-kit.ts';

const email = Type.String({ minLength: 3, maxLength: 254, description: 'The e-mail address of the user.' });
const password = Type.String({ minLength: 1, maxLength: 1024 });
const refreshToken = Type.String({ minLength: 1, maxLength: 128, description: 'The refresh token of the last login or refresh (`bwr_...` for users, `bwrp_...` for operators).' });

export const loginBody = Type.Object({ tenantId, email, password }, { additionalProperties: false });

export const refreshBody = Type.Object({ refreshToken }, { additionalProperties: false });

export const changePasswordBody = Type.Object(
  { tenantId, email, currentPassword: password, newPassword: password },
  { additionalProperties: false },
);

export const tokenResponse = Type.Object({
  tokenType: Type.Literal('Bearer'),
  accessToken: Type.String({ description: 'A JWT (EdDSA) for `Authorization: Bearer`; verify it with /.well-known/jwks.json.' }),
  expiresIn: Type.Integer({ description: 'Seconds until the access token expires.' }),
  refreshToken: Type.String({ description: 'Single use: each refresh returns the next one. Reusing a spent one ends the session.' }),
  refreshExpiresAt: Type.String({ format: 'date-time' }),
  sessionId: Type.String(),
});

export const jwksDocument = Type.Object({ keys: Type.Array(anyJsonObject()) });

/** `/v1/me`: who the access token belongs to, a tenant's user or a platform operator (`kind` tells). */
export const meResponse = Type.Union([
  Type.Object({ kind: Type.Literal('user'), tenantId: Type.String(), ...user.properties }),
  Type.Object({ kind: Type.Literal('operator'), ...operator.properties }),
]);
