import { Type } from 'typebox';
import { tenantId } from '../tenancy/schemas.ts';

const email = Type.String({ minLength: 3, maxLength: 254, description: 'The e-mail address of the user.' });
const password = Type.String({ minLength: 1, maxLength: 1024 });
const refreshToken = Type.String({ minLength: 1, maxLength: 128, description: 'The refresh token of the last login or refresh (`bwr_...`).' });

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

export const jwksDocument = Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) });
