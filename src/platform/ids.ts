import { randomBytes } from 'node:crypto';

/** Public ids are 48 bits from the CSPRNG as 12 lowercase hex characters (DESIGN.md invariant 5). */
export const idPattern = '^[0-9a-f]{12}$';
const idRegExp = new RegExp(idPattern);

export function newId(): string {
  return randomBytes(6).toString('hex');
}

export function isId(value: string): boolean {
  return idRegExp.test(value);
}

/**
 * Runs `insert` with fresh ids until it does not collide. With 48-bit ids a collision is rare
 * but real at scale (birthday bound ~16M rows), so callers map a unique violation on the id to `retry`.
 */
export async function withFreshId<T>(
  insert: (id: string) => Promise<T | typeof retryWithNewId>,
  attempts = 5,
): Promise<T> {
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    const result = await insert(newId());
    if (result !== retryWithNewId) return result;
  }
  throw new Error(`no free id after ${attempts} attempts`);
}

export const retryWithNewId: unique symbol = Symbol('retryWithNewId');
