import { Type, type Static } from 'typebox';
import { tenantBuckets, quotaNames } from './policy.ts';

const unlimited = Type.Literal('unlimited', { description: 'No limit.' });

const rate = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Units per window (the bucket size).' }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400, description: 'Seconds to refill an empty bucket.' }),
  },
  { additionalProperties: false },
);

const quotaValue = Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), unlimited]);

export const limitOverrides = Type.Object(
  {
    rates: Type.Optional(
      Type.Object(Object.fromEntries(tenantBuckets.map((bucket) => [bucket, Type.Optional(Type.Union([rate, unlimited]))])), {
        additionalProperties: false,
        description: 'Rate buckets: `requests` (every request), `login`, `crypto` (transit items), `export` (audit exports).',
      }),
    ),
    quotas: Type.Optional(
      Type.Object(Object.fromEntries(quotaNames.map((name) => [name, Type.Optional(quotaValue)])), {
        additionalProperties: false,
        description: 'Quotas: `records`, `recordBytes` (bytes of record data), `apiKeys` (live keys), `users`.',
      }),
    ),
    maxConcurrentRequests: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 100_000 }), unlimited], { description: 'Requests in progress per server instance.' })),
  },
  { additionalProperties: false, description: 'Only what differs from the platform defaults; what is absent follows them.' },
);
export type LimitOverridesBody = Static<typeof limitOverrides>;

const source = Type.Union([Type.Literal('default'), Type.Literal('override')]);
const nullableCount = Type.Union([Type.Integer(), Type.Null()]);

export const limitsDocument = Type.Object({
  tenantId: Type.String(),
  rates: Type.Object(
    Object.fromEntries(tenantBuckets.map((bucket) => [bucket, Type.Object({ limit: nullableCount, windowSeconds: nullableCount, source })])),
    { description: 'Effective rates; `limit: null` is unlimited.' },
  ),
  quotas: Type.Object(Object.fromEntries(quotaNames.map((name) => [name, Type.Object({ limit: nullableCount, used: Type.Integer(), source })])), {
    description: 'Effective quotas and current usage; `limit: null` is unlimited.',
  }),
  maxConcurrentRequests: Type.Object({ limit: nullableCount, source }),
  overrides: limitOverrides,
  updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Last change of the overrides.' }),
});
