import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';

export const tenantId = Type.String({ pattern: idPattern, description: 'Tenant id: 12 lowercase hex characters.' });
export const tenantParams = Type.Object({ tenantId }, { additionalProperties: false });

const tenantName = Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'Display name.' });
const region = Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$', description: 'One of the configured regions (BULWARK_REGIONS).' });

export const tenant = Type.Object({
  id: tenantId,
  name: Type.String(),
  region: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('offboarding'), Type.Literal('deleted')]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type Tenant = Static<typeof tenant>;

export const createTenantBody = Type.Object({ name: tenantName, region: Type.Optional(region) }, { additionalProperties: false });

export const createdTenant = Type.Object({
  ...tenant.properties,
  admin: Type.Optional(Type.Object({ id: Type.String(), email: Type.String() }, { description: 'The first user, when `admin` was given.' })),
});

export const updateTenantBody = Type.Object(
  {
    name: Type.Optional(tenantName),
    status: Type.Optional(
      Type.Union([Type.Literal('active'), Type.Literal('suspended')], {
        description: 'Suspending blocks every tenant-scoped route with 403 tenant_suspended.',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateTenant = Static<typeof updateTenantBody>;

const dateTime = Type.String({ format: 'date-time' });

export const auditArchive = Type.Object(
  {
    location: Type.String({ description: 'The object in the operator archive of the tenant\'s region.' }),
    sha256: Type.String({ description: "SHA-256 (hex) of the archive's bytes." }),
    events: Type.Integer({ description: 'Events in it (NDJSON, one per line, as stored: hashes intact, personal data sealed).' }),
  },
  { description: "The tenant's audit chain, archived before the purge (BULWARK_OFFBOARDING_AUDIT_ARCHIVE)." },
);
export type AuditArchive = Static<typeof auditArchive>;

export const offboardingProof = Type.Object(
  {
    tenantId,
    region: Type.String(),
    requestedAt: dateTime,
    requestedBy: Type.String({ description: '`operator:<id>`.' }),
    confirmedAt: dateTime,
    confirmedBy: Type.String(),
    completedAt: dateTime,
    dataKeys: Type.Object({
      destroyedVersions: Type.Array(Type.Integer(), { description: "The tenant's data key versions whose key material was destroyed (versions trimmed earlier had none left)." }),
    }),
    agentsRevoked: Type.Integer({ description: 'Agents whose token and bus credentials were revoked.' }),
    rowsDeleted: Type.Record(Type.String(), Type.Integer(), { description: 'Rows deleted per tenant table (every table with a `tenant_id` column).' }),
    rowsDeletedTotal: Type.Integer(),
    backups: Type.Object({
      escrowKeyDestroyed: Type.Boolean({ description: "The tenant's backup escrow key was destroyed: its segments in every backup are unreadable." }),
      objectsDeleted: Type.Integer({ description: "The tenant's backup segments deleted." }),
    }),
    auditArchive: Type.Union([auditArchive, Type.Null()], { description: 'null: not archived.' }),
  },
  { description: 'What the offboarding destroyed; the platform audit event `tenant.offboard` carries the same.' },
);
export type OffboardingProof = Static<typeof offboardingProof>;

export const offboarding = Type.Object({
  tenantId,
  state: Type.Union([Type.Literal('requested'), Type.Literal('confirming'), Type.Literal('completed')], {
    description: '`requested`: in its grace period or waiting for confirmation, can be cancelled; `confirming`: a confirmation began (confirm again to finish); `completed`: the data is gone, `proof` says what went.',
  }),
  previousStatus: Type.Union([Type.Literal('active'), Type.Literal('suspended')], { description: 'The status a cancel restores.' }),
  requestedAt: dateTime,
  requestedBy: Type.String({ description: '`operator:<id>`.' }),
  confirmableAt: Type.String({ format: 'date-time', description: 'The end of the grace period (BULWARK_OFFBOARDING_GRACE_HOURS).' }),
  confirmedAt: Type.Union([dateTime, Type.Null()]),
  completedAt: Type.Union([dateTime, Type.Null()]),
  vacuumedAt: Type.Union([dateTime, Type.Null()], { description: 'When every tenant table was rewritten (VACUUM FULL) and checkpointed after the purge.' }),
  proof: Type.Union([offboardingProof, Type.Null()]),
});
export type Offboarding = Static<typeof offboarding>;
