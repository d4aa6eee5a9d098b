import type { Queryable } from '../../platform/db/database.ts';

/** Platform keys (`platform_keys`, migration 0008): wrapped by the root key, one row per name. */
export async function findPlatformKey(tx: Queryable, name: string): Promise<string | undefined> {
  const { rows } = await tx.query<{ wrapped_key: string }>('SELECT wrapped_key FROM platform_keys WHERE name = $1', [name]);
  return rows[0]?.wrapped_key;
}

/** Inserts the key unless another instance was first; the caller reads back whichever won. */
export async function insertPlatformKey(tx: Queryable, name: string, wrappedKey: string, now: Date): Promise<void> {
  await tx.query('INSERT INTO platform_keys (name, wrapped_key, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING', [name, wrappedKey, now]);
}

export async function listPlatformKeys(tx: Queryable): Promise<{ name: string; wrapped_key: string }[]> {
  const { rows } = await tx.query<{ name: string; wrapped_key: string }>('SELECT name, wrapped_key FROM platform_keys ORDER BY name FOR UPDATE');
  return rows;
}

export async function replacePlatformKey(tx: Queryable, name: string, wrappedKey: string): Promise<void> {
  await tx.query('UPDATE platform_keys SET wrapped_key = $2 WHERE name = $1', [name, wrappedKey]);
}
