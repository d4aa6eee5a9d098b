import { randomFillSync } from 'node:crypto';

/** Public ids are 48 bits from the CSPRNG as 12 lowercase hex characters (DESIGN.md invariant 5). */
export const idPattern = '^[0-9a-f]{12}$';
const idRegExp = new RegExp(idPattern);

// Ids are drawn from a pooled CSPRNG buffer (as randomUUID does): one syscall per 1024 ids instead of
// one per id, which showed up on the per-request path (request ids).
const idBytes = 6;
const randomPool = Buffer.alloc(idBytes * 1024);
let poolOffset = randomPool.length;

export function newId(): string {
  if (poolOffset + idBytes > randomPool.length) {
    randomFillSync(randomPool);
    poolOffset = 0;
  }
  const id = randomPool.toString('hex', poolOffset, poolOffset + idBytes);
  poolOffset += idBytes;
  return id;
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
