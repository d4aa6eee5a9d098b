import type { Queryable } from '../db/database.ts';

/** The self-managed CA (`tls_ca`, migration 0017): one row per CA, platform scope only. */
export interface StoredCa {
  certificatePem: string;
  privateSealed: Buffer;
  privateWrappedKey: string;
}

export async function findCa(tx: Queryable, id: string): Promise<StoredCa | undefined> {
  const { rows } = await tx.query<{ certificate_pem: string; private_sealed: Buffer; private_wrapped_key: string }>(
    'SELECT certificate_pem, private_sealed, private_wrapped_key FROM tls_ca WHERE id = $1',
    [id],
  );
  const row = rows[0];
  return row === undefined ? undefined : { certificatePem: row.certificate_pem, privateSealed: Buffer.from(row.private_sealed), privateWrappedKey: row.private_wrapped_key };
}

/** Inserts the CA unless another instance was first; the caller reads back whichever won. */
export async function insertCa(tx: Queryable, id: string, ca: StoredCa, createdAt: Date, notAfter: Date): Promise<void> {
  await tx.query(
    'INSERT INTO tls_ca (id, certificate_pem, private_sealed, private_wrapped_key, created_at, not_after) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING',
    [id, ca.certificatePem, ca.privateSealed, ca.privateWrappedKey, createdAt, notAfter],
  );
}
