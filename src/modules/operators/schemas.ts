import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { platformRoles } from '../access/permissions.ts';

export const operatorId = Type.String({ pattern: idPattern, description: 'Operator id: 12 lowercase hex characters.' });
export const operatorParams = Type.Object({ operatorId }, { additionalProperties: false });

const email = Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$', description: 'E-mail address, unique among operators (case-insensitive).' });
const name = Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Display name.' });
const password = Type.String({ minLength: 1, maxLength: 1024, description: 'Checked against the default password policy; never stored or returned.' });
const role = Type.Union(
  [Type.Literal('platform-admin'), Type.Literal('platform-auditor')],
  { description: Object.entries(platformRoles).map(([key, value]) => `\`${key}\`: ${value.description}`).join(' ') },
);
const status = Type.Union([Type.Literal('active'), Type.Literal('disabled')], { description: 'A disabled operator cannot log in; its sessions end.' });

export const operator = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  role: Type.String(),
  status: Type.String(),
  passwordSet: Type.Boolean(),
  mustChangePassword: Type.Boolean(),
  passwordChangedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastLoginAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type Operator = Static<typeof operator>;

export const setupBody = Type.Object(
  {
    setupToken: Type.String({ minLength: 32, maxLength: 512, description: 'The one-time setup token printed at first start (or BULWARK_SETUP_TOKEN).' }),
    email,
    name: Type.Optional(name),
    password,
  },
  { additionalProperties: false },
);
export type SetupBody = Static<typeof setupBody>;

export const createOperatorBody = Type.Object(
  {
    email,
    name: Type.Optional(name),
    role,
    password: Type.Optional(password),
    mustChangePassword: Type.Optional(Type.Boolean({ description: 'Require a new password at the first login. Default true when a password is given.' })),
  },
  { additionalProperties: false },
);
export type CreateOperatorBody = Static<typeof createOperatorBody>;

export const updateOperatorBody = Type.Object(
  { email: Type.Optional(email), name: Type.Optional(Type.Union([name, Type.Null()])), role: Type.Optional(role), status: Type.Optional(status) },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateOperatorBody = Static<typeof updateOperatorBody>;

export const setOperatorPasswordBody = Type.Object(
  {
    password,
    mustChangePassword: Type.Optional(Type.Boolean({ description: 'Require another change at the next login (an admin-set password). Default true.' })),
  },
  { additionalProperties: false },
);

export const operatorLoginBody = Type.Object({ email: Type.String({ minLength: 3, maxLength: 254 }), password }, { additionalProperties: false });

export const operatorPasswordChangeBody = Type.Object(
  { email: Type.String({ minLength: 3, maxLength: 254 }), currentPassword: password, newPassword: password },
  { additionalProperties: false },
);
