import { Type } from 'typebox';
import { BulwarkError } from '../errors/bulwark-error.ts';
import { isId } from '../ids.ts';

/**
 * Keyset pagination over 12-hex ids: the cursor is the last id of the previous page, opaque to clients.
 * Stable under concurrent inserts and deletes: every row present for the whole walk appears exactly once.
 */
export const pageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Items per page (1-200).' })),
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'The `nextCursor` of the previous page.' })),
  },
  { additionalProperties: false },
);

export function encodeCursor(lastId: string): string {
  return Buffer.from(`v1:${lastId}`).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string {
  if (cursor === undefined) return '';
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  const lastId = decoded.slice(3);
  if (!decoded.startsWith('v1:') || !isId(lastId)) throw new BulwarkError('invalid_cursor');
  return lastId;
}

/** Splits a `limit + 1` fetch into the page and the cursor of the next one. */
export function toPage<Row extends { id: string }, Item>(rows: Row[], limit: number, map: (row: Row) => Item): { items: Item[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { items: page.map(map), nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}

export const pageOf = <T extends Parameters<typeof Type.Array>[0]>(item: T) =>
  Type.Object({
    items: Type.Array(item),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page.' }),
  });
