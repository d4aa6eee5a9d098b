import { Type } from 'typebox';
import { idPattern } from '../../platform/ids.ts';

export const backupParams = Type.Object({ backupId: Type.String({ pattern: idPattern, description: 'Backup id: 12 lowercase hex characters.' }) }, { additionalProperties: false });

export const backupSummary = Type.Object({
  id: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  kind: Type.Union([Type.Literal('scheduled'), Type.Literal('on-demand')]),
  slot: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'The schedule slot a scheduled backup covers.' }),
  engine: Type.Union([Type.Literal('pglite'), Type.Literal('postgres')]),
  schemaVersion: Type.Integer({ description: 'The migration version of the database it copies; a restore needs the same.' }),
  tenants: Type.Integer({ description: 'Tenant segments, each sealed with that tenant’s escrowed backup key.' }),
  rows: Type.Integer(),
  bytes: Type.Integer({ description: 'Compressed, encrypted size of every segment.' }),
  regions: Type.Array(Type.String(), { description: 'The regions whose storage holds a part of it.' }),
});

export const backupList = Type.Object({
  items: Type.Array(backupSummary, { description: 'Newest first.' }),
  locations: Type.Record(Type.String(), Type.String(), { description: 'Each region’s backup storage (no credentials).' }),
});

const segmentStatus = Type.Union([Type.Literal('ok'), Type.Literal('shredded'), Type.Literal('missing'), Type.Literal('corrupt')], {
  description: '`shredded`: the tenant was offboarded and its escrow key destroyed, so its segment can no longer be read (by design).',
});

export const verifyReport = Type.Object({
  id: Type.String(),
  ok: Type.Boolean({ description: 'Every segment is present, matches its checksum, decrypts and has its row count (shredded tenants aside).' }),
  manifest: Type.Union([Type.Literal('ok'), Type.Literal('corrupt')]),
  segments: Type.Array(Type.Object({ name: Type.String(), region: Type.String(), status: segmentStatus, rows: Type.Integer() })),
});

export const restoreBody = Type.Object(
  {
    target: Type.String({
      pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
      description: 'Name of the data folder to restore into: `<BULWARK_DATA_DIR>/restores/<target>/pglite`, which `BULWARK_DATA_DIR=<BULWARK_DATA_DIR>/restores/<target>` then serves. For a PostgreSQL target use the CLI (`bulwark backup restore <id> --to <url>`).',
    }),
    force: Type.Optional(Type.Boolean({ default: false, description: 'Replace a Bulwark database already in the target.' })),
  },
  { additionalProperties: false },
);

export const restoreReport = Type.Object({
  backupId: Type.String(),
  target: Type.String({ description: 'The target as named in the request.' }),
  location: Type.String({ description: 'Where it went: the database folder, relative to the data folder.' }),
  tables: Type.Integer(),
  rows: Type.Integer(),
  tenantsRestored: Type.Integer(),
  tenantsShredded: Type.Array(Type.String(), { description: 'Offboarded tenants: restored as a bare `deleted` row, nothing else.' }),
});
