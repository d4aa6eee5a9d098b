import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { tenantId } from '../tenancy/schemas.ts';

export const userId = Type.String({ pattern: idPattern, description: 'User id: 12 lowercase hex characters.' });
export const userParams = Type.Object({ tenantId, userId }, { additionalProperties: false });

// RFC 5321 caps a path at 256 octets, so an address at 254 characters; the shape check is deliberately
// loose (one @, no spaces): only a confirmation mail proves an address.
const emailShape = { minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' };
const email = Type.String({ ...emailShape, description: 'E-mail address, unique per tenant (case-insensitive).' });
const personName = (what: string) => Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: what });
// Long enough for any policy (maxLength up to 1024 code points, 4 UTF-8 bytes each is not a JSON concern).
const password = Type.String({ minLength: 1, maxLength: 1024, description: 'Checked against the tenant password policy; never stored or returned.' });

export const user = Type.Object({
  id: Type.String(),
  email: Type.String(),
  firstName: Type.Union([Type.String(), Type.Null()]),
  lastName: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
  passwordSet: Type.Boolean({ description: 'Whether the user has a password (an invited user has none yet).' }),
  mustChangePassword: Type.Boolean({ description: 'The next login must set a new password (set by an admin, or the password expired).' }),
  passwordChangedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastLoginAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type User = Static<typeof user>;

export const createUserBody = Type.Object(
  {
    email,
    firstName: Type.Optional(personName('First name.')),
    lastName: Type.Optional(personName('Last name.')),
    password: Type.Optional(password),
    mustChangePassword: Type.Optional(Type.Boolean({ description: 'Require a new password at the next login. Default false.' })),
  },
  { additionalProperties: false },
);
export type CreateUserBody = Static<typeof createUserBody>;

export const updateUserBody = Type.Object(
  {
    email: Type.Optional(email),
    firstName: Type.Optional(Type.Union([personName('First name.'), Type.Null()])),
    lastName: Type.Optional(Type.Union([personName('Last name.'), Type.Null()])),
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('disabled')], { description: 'A disabled user cannot log in.' })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateUserBody = Static<typeof updateUserBody>;

export const setPasswordBody = Type.Object(
  {
    password,
    mustChangePassword: Type.Optional(Type.Boolean({ description: 'Require another change at the next login (an admin-set password). Default true.' })),
  },
  { additionalProperties: false },
);

export const userListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Items per page (1-200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'The `nextCursor` of the previous page.' })),
    email: Type.Optional(Type.String({ ...emailShape, description: 'Only the user with this e-mail address (exact, case-insensitive).' })),
  },
  { additionalProperties: false },
);

const base64 = (description: string) => Type.String({ minLength: 4, maxLength: 200, pattern: '^[A-Za-z0-9+/]+={0,2}$', description });

/** A password hash from another system, accepted once and replaced by Argon2id at the user's next login. */
export const importedCredential = Type.Union(
  [
    Type.Object(
      { algorithm: Type.Literal('md5'), hash: Type.String({ pattern: '^[0-9a-fA-F]{32}$', description: 'Unsalted MD5 of the password, hex.' }) },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        algorithm: Type.Literal('pbkdf2-sha256'),
        iterations: Type.Integer({ minimum: 1000, maximum: 10_000_000 }),
        salt: base64('Salt, base64 (Keycloak: `salt` of the credential).'),
        hash: base64('Derived key, base64 (Keycloak: `value`).'),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      { algorithm: Type.Literal('argon2id'), hash: Type.String({ maxLength: 512, pattern: '^\\$argon2id\\$', description: 'PHC string.' }) },
      { additionalProperties: false },
    ),
  ],
  { description: 'The user keeps their password: the hash is verified at their next login and replaced by Argon2id.' },
);

export const maxImportBatch = 500;

export const importUsersBody = Type.Object(
  {
    users: Type.Array(
      Type.Object(
        {
          email,
          firstName: Type.Optional(personName('First name.')),
          lastName: Type.Optional(personName('Last name.')),
          credential: importedCredential,
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: maxImportBatch },
    ),
  },
  { additionalProperties: false },
);
export type ImportUsersBody = Static<typeof importUsersBody>;

export const importUsersResult = Type.Object({ users: Type.Array(Type.Object({ id: Type.String(), email: Type.String() })) });

export const legacyHashReport = Type.Object({
  total: Type.Integer({ description: 'Users whose stored hash is still an imported legacy hash.' }),
  byAlgorithm: Type.Object({ md5: Type.Integer(), 'pbkdf2-sha256': Type.Integer() }),
  users: Type.Array(Type.Object({ id: Type.String(), algorithm: Type.String() }), { description: 'The first 1000 of them, by id.' }),
});

export const passwordPolicy = Type.Object(
  {
    minLength: Type.Integer({ minimum: 8, maximum: 128, description: 'Default 12.' }),
    maxLength: Type.Integer({ minimum: 64, maximum: 1024, description: 'Default 128; at least 64 so passphrases fit.' }),
    requireLowercase: Type.Boolean(),
    requireUppercase: Type.Boolean(),
    requireDigit: Type.Boolean(),
    requireSymbol: Type.Boolean(),
    minStrength: Type.Integer({ minimum: 0, maximum: 4, description: 'zxcvbn score 0-4; default 3.' }),
    rejectCommon: Type.Boolean({ description: 'Refuse passwords on the shipped list of common and breached passwords (checked offline).' }),
    historyCount: Type.Integer({ minimum: 0, maximum: 24, description: 'The last N passwords may not be reused; default 5.' }),
    expiryDays: Type.Union([Type.Integer({ minimum: 1, maximum: 3650 }), Type.Null()], { description: 'Force a change after N days; null: never.' }),
  },
  { additionalProperties: false },
);
