import { toBuffer, type Queryable } from '../../platform/db/database.ts';

/** A signing key as the verifiers see it: no private material. */
export interface SigningKeyRow {
  kid: string;
  alg: string;
  public_jwk: unknown;
  created_at: Date;
  activated_at: Date;
  retired_at: Date | null;
}

/** The private half, sealed under a random key that the root key provider wrapped. */
export interface SealedPrivateKey {
  sealed: Buffer;
  wrappedKey: string;
}

export interface NewSigningKey {
  kid: string;
  alg: string;
  publicJwk: object;
  privateSealed: Buffer;
  privateWrappedKey: string;
}

// One fleet-wide lock for creating and rotating signing keys (transaction-scoped, so it cannot leak).
const signingKeysLockKey = 7_245_183_005;

/** Serialises key creation and rotation across instances until the transaction ends. */
export async function lockSigningKeys(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [signingKeysLockKey]);
}

/** The active key and the retired keys retired after `retiredAfter` (still inside their verification window). */
export async function listVerificationKeys(tx: Queryable, retiredAfter: Date): Promise<SigningKeyRow[]> {
  const { rows } = await tx.query<SigningKeyRow>(
    `SELECT kid, alg, public_jwk, created_at, activated_at, retired_at FROM signing_keys
      WHERE activated_at IS NOT NULL AND (retired_at IS NULL OR retired_at > $1)
      ORDER BY activated_at DESC, kid`,
    [retiredAfter],
  );
  return rows;
}

export async function findActiveKey(tx: Queryable): Promise<SigningKeyRow | undefined> {
  const { rows } = await tx.query<SigningKeyRow>(
    `SELECT kid, alg, public_jwk, created_at, activated_at, retired_at FROM signing_keys
      WHERE activated_at IS NOT NULL AND retired_at IS NULL`,
  );
  return rows[0];
}

/** The sealed private key of `kid`, or undefined once it was destroyed (or never existed). */
export async function findSealedPrivateKey(tx: Queryable, kid: string): Promise<SealedPrivateKey | undefined> {
  const { rows } = await tx.query<{ private_sealed: unknown; private_wrapped_key: string | null }>(
    'SELECT private_sealed, private_wrapped_key FROM signing_keys WHERE kid = $1 AND destroyed_at IS NULL',
    [kid],
  );
  const row = rows[0];
  if (row === undefined || row.private_sealed === null || row.private_wrapped_key === null) return undefined;
  return { sealed: toBuffer(row.private_sealed), wrappedKey: row.private_wrapped_key };
}

/** Inserts a key that signs from `now` on. The caller retired the previous one in the same transaction. */
export async function insertActiveKey(tx: Queryable, key: NewSigningKey, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed, private_wrapped_key, created_at, activated_at)
     VALUES ($1, $2, $3::jsonb, $4, $5, $6, $6)`,
    [key.kid, key.alg, JSON.stringify(key.publicJwk), key.privateSealed, key.privateWrappedKey, now],
  );
}

/** Retires the key and destroys its private material: a retired key only verifies. */
export async function retireKey(tx: Queryable, kid: string, now: Date): Promise<void> {
  await tx.query(
    `UPDATE signing_keys
        SET retired_at = $2, destroyed_at = $2, private_sealed = NULL, private_wrapped_key = NULL
      WHERE kid = $1 AND retired_at IS NULL`,
    [kid, now],
  );
}
