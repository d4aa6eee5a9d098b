import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { anyJsonObject } from '../../platform/http/route-kit.ts';

const actorKind = Type.Union(
  ['user', 'operator', 'api-key', 'agent', 'service', 'system', 'anonymous'].map((kind) => Type.Literal(kind)),
  { description: 'Who acted.' },
);
const outcome = Type.Union([Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')]);

/** The filters of a query, an export and a summary. */
const filterProperties = {
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Events at or after this time.' })),
  to: Type.Optional(Type.String({ format: 'date-time', description: 'Events before this time.' })),
  actorKind: Type.Optional(actorKind),
  actorId: Type.Optional(Type.String({ pattern: idPattern, description: 'The acting user, operator, API key, ... (12 hex).' })),
  action: Type.Optional(
    Type.String({
      maxLength: 64,
      pattern: '^[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)*(\\.\\*)?$',
      description: 'An action (`user.create`), or every action under a prefix (`user.*`).',
    }),
  ),
  targetType: Type.Optional(Type.String({ maxLength: 64, pattern: '^[a-z][a-z0-9-]*$' })),
  targetId: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9._/:-]+$' })),
  outcome: Type.Optional(outcome),
  requestId: Type.Optional(Type.String({ pattern: idPattern, description: 'The events of one request (its x-request-id).' })),
};

export const auditQuery = Type.Object(
  {
    ...filterProperties,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'Events per page (1-500), newest first.' })),
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'The `nextCursor` of the previous page.' })),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof auditQuery>;

export const auditExportQuery = Type.Object(
  {
    ...filterProperties,
    format: Type.Optional(Type.Union([Type.Literal('ndjson'), Type.Literal('csv')], { default: 'ndjson', description: 'One JSON object per line (default), or CSV with a header row.' })),
  },
  { additionalProperties: false },
);

export const auditSummaryQuery = Type.Object(filterProperties, { additionalProperties: false });

export const auditEvent = Type.Object({
  seq: Type.Integer({ description: 'Position in the chain, from 1 without gaps.' }),
  id: Type.String(),
  occurredAt: Type.String({ format: 'date-time' }),
  actor: Type.Object({ kind: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }),
  action: Type.String(),
  target: Type.Union([Type.Object({ type: Type.String(), id: Type.String() }), Type.Null()]),
  outcome: Type.String(),
  requestId: Type.Union([Type.String(), Type.Null()]),
  sessionId: Type.Union([Type.String(), Type.Null()]),
  detail: anyJsonObject(),
  personalData: Type.Union([Type.Literal('present'), Type.Literal('erased'), Type.Literal('none')], {
    description: '`erased`: the subject was forgotten; the event still verifies, its personal data no longer opens.',
  }),
  source: Type.Union([Type.String(), Type.Null()], { description: 'The client address (personal data).' }),
  userAgent: Type.Union([Type.String(), Type.Null()], { description: 'Personal data.' }),
  email: Type.Union([Type.String(), Type.Null()], { description: 'The e-mail address an anonymous login tried (personal data).' }),
  hash: Type.String({ description: 'This event\'s chain hash (hex).' }),
  prevHash: Type.String(),
});

export const auditPage = Type.Object({
  items: Type.Array(auditEvent),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for older events; null on the last page.' }),
});

const counted = Type.Array(Type.Object({ name: Type.String(), count: Type.Integer() }));
export const auditSummary = Type.Object({ total: Type.Integer(), byAction: counted, byActor: counted, byOutcome: counted });

export const verifyReport = Type.Object({
  ok: Type.Boolean(),
  eventsChecked: Type.Integer(),
  checkpointsChecked: Type.Integer(),
  firstBreak: Type.Union(
    [
      Type.Object({
        seq: Type.Integer({ description: 'The first sequence number from which the chain does not hold.' }),
        reason: Type.String({ description: 'missing_event, hash_mismatch, broken_link, bad_checkpoint, missing_boundary or head_mismatch.' }),
      }),
      Type.Null(),
    ],
  ),
  headSeq: Type.Integer(),
  prunedThrough: Type.Integer({ description: 'Events up to this sequence number were pruned by retention.' }),
});

export const auditSettings = Type.Object({
  retentionDays: Type.Union([Type.Integer(), Type.Null()], { description: 'Events older than this are pruned; null: kept for ever.' }),
  prunedThrough: Type.Integer(),
  headSeq: Type.Integer(),
});

export const auditSettingsBody = Type.Object(
  { retentionDays: Type.Union([Type.Integer({ minimum: 1, maximum: 36_500 }), Type.Null()], { description: '1 to 36500 days, or null to keep every event.' }) },
  { additionalProperties: false },
);

export const checkpointKey = Type.Object({
  keyId: Type.String({ description: 'Names the key in each checkpoint.' }),
  algorithm: Type.Literal('Ed25519'),
  publicKey: Type.String({ description: 'SPKI, PEM.' }),
  jwk: Type.Record(Type.String(), Type.String()),
});

export const checkpointList = Type.Object({
  items: Type.Array(
    Type.Object({
      seq: Type.Integer(),
      hash: Type.String({ description: 'The hash of the event at seq (hex).' }),
      kind: Type.String({ description: '`periodic`, or `retention` (the boundary below which events were pruned).' }),
      keyId: Type.String(),
      signature: Type.String({ description: 'Ed25519 over the payload in docs/audit.md, base64.' }),
      signedAt: Type.String({ format: 'date-time' }),
    }),
  ),
});
