import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { tenantId } from '../tenancy/schemas.ts';
import { anyJsonObject } from '../../platform/http/route-kit.ts';

export const collectionName = Type.String({
  pattern: '^[a-z][a-z0-9_-]{0,62}$',
  description: 'Collection name: a lowercase letter, then up to 62 lowercase letters, digits, `_` or `-`.',
});
export const recordId = Type.String({ pattern: idPattern, description: 'Record id: 12 lowercase hex characters.' });

export const collectionParams = Type.Object({ tenantId, collection: collectionName }, { additionalProperties: false });
export const recordParams = Type.Object({ tenantId, collection: collectionName, recordId }, { additionalProperties: false });

const recordData = anyJsonObject({ description: 'The record: any JSON object.' });

export const recordBody = Type.Object({ data: recordData }, { additionalProperties: false });

export const record = Type.Object({
  id: Type.String(),
  collection: Type.String(),
  version: Type.Integer({ description: 'Starts at 1 and grows by one per write; the ETag is its quoted value.' }),
  data: recordData,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type StoredRecord = Static<typeof record>;

export const conditionalHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({ maxLength: 64, description: 'Write only if the current ETag matches (e.g. `"3"`).' }),
  ),
  'if-none-match': Type.Optional(Type.String({ maxLength: 64, description: '`*`: create only; fail if the record exists.' })),
});
