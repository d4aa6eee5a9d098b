import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { auditEvent } from '../audit/schemas.ts';
import { user, userId } from '../identity/schemas.ts';
import { tenantId } from '../tenancy/schemas.ts';

/** Plain text on one line: no control characters (line breaks included), at least one visible character. */
const plainText = (maxLength: number, description: string) => Type.String({ minLength: 1, maxLength, pattern: '^[^\\p{C}]*\\S[^\\p{C}]*$', description });

export const holdId = Type.String({ pattern: idPattern, description: 'Legal hold id: 12 lowercase hex characters.' });
export const holdParams = Type.Object({ tenantId, holdId }, { additionalProperties: false });

// --- legal holds ---

export const createHoldBody = Type.Object(
  {
    name: plainText(100, 'A short name, shown where the hold blocks an action (e.g. a case reference).'),
    reason: plainText(1000, 'Why the data must be kept.'),
    userId: Type.Optional(Type.Unsafe<string>({ ...userId, description: 'A hold on this user only; without it the hold covers the whole tenant.' })),
  },
  { additionalProperties: false },
);
export type CreateHoldBody = Static<typeof createHoldBody>;

export const legalHold = Type.Object({
  id: Type.String(),
  name: Type.String(),
  reason: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()], { description: 'The user it covers; null: the whole tenant.' }),
  active: Type.Boolean({ description: 'In force (not released).' }),
  createdAt: Type.String({ format: 'date-time' }),
  createdBy: Type.String({ description: '`user:<id>` or `api-key:<id>`.' }),
  releasedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  releasedBy: Type.Union([Type.String(), Type.Null()]),
});
export type LegalHold = Static<typeof legalHold>;

export const releasedHold = Type.Object({
  ...legalHold.properties,
  erasuresCompleted: Type.Array(Type.String(), { description: 'The pending erasure requests this release let run (their ids).' }),
});
export type ReleasedHold = Static<typeof releasedHold>;

/** A hold as other modules see it (offboarding names the holds that block it). */
export interface ActiveHold {
  id: string;
  name: string;
  userId: string | null;
}

// --- erasure ---

export const eraseBody = Type.Object(
  {
    reason: Type.Optional(plainText(500, 'Why (e.g. a ticket reference); not who: the request is kept after the person is gone.')),
  },
  { additionalProperties: false },
);
export type EraseBody = Static<typeof eraseBody>;

const count = (description: string) => Type.Integer({ minimum: 0, description });

export const removedCounts = Type.Object({
  users: count('The user row (e-mail, names, password hash): 1.'),
  passwordHistory: count('Earlier password hashes.'),
  sessions: count('Login sessions (revoked first).'),
  refreshTokens: count('Their refresh tokens.'),
  mfaFactors: count('Second factors.'),
  recoveryCodes: count('Recovery codes.'),
  mfaChallenges: count('Logins waiting for a second factor.'),
  ssoIdentities: count('Linked identity provider accounts.'),
  roleAssignments: count('Role assignments.'),
  loginThrottles: count('Brute-force counters keyed on the user.'),
  auditSubjectKeys: count('Their audit subject key (destroyed: their personal data in every event no longer opens).'),
});
export type RemovedCounts = Static<typeof removedCounts>;

export const erased = Type.Object({
  outcome: Type.Literal('erased'),
  requestId: Type.String({ description: 'The erasure request (see GET .../erasure-requests).' }),
  userId: Type.String(),
  removed: removedCounts,
});
export type Erased = Static<typeof erased>;

export const deferred = Type.Object({
  outcome: Type.Literal('deferred'),
  requestId: Type.String(),
  userId: Type.String(),
  reason: Type.Literal('legal_hold'),
  holds: Type.Array(Type.Object({ id: Type.String(), name: Type.String(), userId: Type.Union([Type.String(), Type.Null()]) }), {
    description: 'The holds in force over the user: the erasure runs when the last of them is released.',
  }),
  sessionsRevoked: count('Sessions ended now (the user is disabled until the erasure runs).'),
});
export type Deferred = Static<typeof deferred>;

export const erasureRequest = Type.Object({
  id: Type.String(),
  userId: Type.String({ description: 'A pseudonym once the erasure ran: it names nobody any more.' }),
  status: Type.Union([Type.Literal('pending'), Type.Literal('completed')]),
  reason: Type.Union([Type.String(), Type.Null()]),
  requestedAt: Type.String({ format: 'date-time' }),
  requestedBy: Type.String(),
  heldBy: Type.Array(Type.String(), { description: 'The holds that deferred it (ids).' }),
  completedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  removed: Type.Union([removedCounts, Type.Null()]),
});
export type ErasureRequest = Static<typeof erasureRequest>;

// --- the data subject's copy ---

const session = Type.Object({
  id: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedReason: Type.Union([Type.String(), Type.Null()]),
});

const factor = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  name: Type.String(),
  status: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

const ssoIdentity = Type.Object({
  connectionId: Type.String(),
  protocol: Type.String(),
  connectionName: Type.String(),
  linkedAt: Type.String({ format: 'date-time' }),
  lastLoginAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

/** The document `GET .../users/{userId}/export` streams (described here for the OpenAPI document). */
export const subjectExport = Type.Object({
  format: Type.Literal('bulwark-data-subject-export/v1'),
  exportedAt: Type.String({ format: 'date-time' }),
  tenantId: Type.String(),
  user,
  roles: Type.Array(Type.String()),
  sessions: Type.Array(session),
  mfa: Type.Object({ factors: Type.Array(factor), recoveryCodesLeft: Type.Integer() }),
  ssoIdentities: Type.Array(ssoIdentity),
  legalHolds: Type.Array(legalHold),
  erasureRequests: Type.Array(erasureRequest),
  auditEvents: Type.Array(
    Type.Object({
      ...auditEvent.properties,
      personalData: Type.Union([Type.Literal('present'), Type.Literal('erased'), Type.Literal('none'), Type.Literal('withheld')], {
        description: "`withheld`: the personal data in the event is another person's (the admin who acted), so it is not part of this copy.",
      }),
    }),
    { description: 'Every event the user did, that was done to them, or that holds their personal data (a failed login naming them), oldest first.' },
  ),
});
export type SubjectExportDocument = Static<typeof subjectExport>;
export type SubjectExportHead = Omit<SubjectExportDocument, 'auditEvents'>;

// --- the inventory ---

export const piiAnnotation = Type.Object(
  {
    data: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    purpose: Type.String({ minLength: 1 }),
    basis: Type.String({ minLength: 1 }),
    retention: Type.String({ minLength: 1 }),
    protection: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);
export type PiiAnnotation = Static<typeof piiAnnotation>;

export const inventory = Type.Object({
  generatedAt: Type.String({ format: 'date-time' }),
  source: Type.String({ description: 'Where the entries come from: the `pii:` comments on the columns, read from the database catalog.' }),
  columns: Type.Array(
    Type.Object({
      table: Type.String(),
      column: Type.String(),
      type: Type.String({ description: 'The column type.' }),
      scope: Type.Union([Type.Literal('tenant'), Type.Literal('platform')], { description: "`tenant`: each tenant's rows under its own RLS context; `platform`: the platform's own." }),
      ...piiAnnotation.properties,
    }),
  ),
});
export type Inventory = Static<typeof inventory>;
