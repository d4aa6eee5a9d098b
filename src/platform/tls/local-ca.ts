import type { X509Certificate as PeculiarCertificate } from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/database.ts';
import { BulwarkError } from '../errors/bulwark-error.ts';
import { type EnvelopeContext, EnvelopeError, open, seal } from '../../modules/keys/envelope.ts';
import type { RootKeyProvider, WrapContext } from '../../modules/keys/root/provider.ts';
import { dataKeyBytes } from '../../modules/keys/root/wrap-context.ts';
import { rootKeyProblem } from '../../modules/keys/service.ts';
import { type CertificateAuthority, createCertificateAuthority, keyAlgorithm, parseCertificate, spkiOf } from './issuance.ts';
import { findCa, insertCa, type StoredCa } from './store.ts';

/** The one CA of a deployment (a later CA rotation would add another row). */
const caId = 'local';

// As the signing keys (0005): the private key is sealed in the envelope format under a random key of its own,
// bound to its row, and that key is wrapped by the root key under a purpose of its own, so no other wrap
// (a tenant data key, a backup key) ever unwraps here and a sealed key moved to another row does not open.
const sealContext: EnvelopeContext = { tenantId: 'platform', table: 'tls_ca', column: 'private_sealed', rowId: caId };
const wrapContext: WrapContext = { tenantId: `platform/tls-ca/${caId}`, keyVersion: 1, purpose: 'tls-ca' };

/**
 * The deployment's CA, from the database; created on first use. Instances starting together each make a
 * candidate and the first insert wins (ON CONFLICT DO NOTHING); every one then serves under the stored CA.
 */
export async function openLocalCa(db: Database, rootKeys: RootKeyProvider, clock: Clock): Promise<CertificateAuthority & { created: boolean }> {
  const existing = await db.withPlatform((tx) => findCa(tx, caId));
  if (existing !== undefined) return { ...(await unseal(existing, rootKeys)), created: false };
  // Key generation and the root-key wrap (a KMS call) happen before the transaction: no lock waits on them.
  const now = clock.now();
  const candidate = await createCertificateAuthority(now);
  let row: StoredCa;
  try {
    row = await sealCandidate(candidate.pem, candidate.pkcs8, rootKeys);
  } finally {
    candidate.pkcs8.fill(0);
  }
  const stored = await db.withPlatform(async (tx) => {
    await insertCa(tx, caId, row, now, candidate.certificate.notAfter);
    return findCa(tx, caId);
  });
  if (stored === undefined) throw new BulwarkError('internal_error', { detail: 'the TLS CA was not stored' });
  if (stored.certificatePem === candidate.pem) return { certificate: candidate.certificate, pem: candidate.pem, signingKey: candidate.signingKey, created: true };
  return { ...(await unseal(stored, rootKeys)), created: false };
}

async function sealCandidate(pem: string, pkcs8: Buffer, rootKeys: RootKeyProvider): Promise<StoredCa> {
  const sealKey = randomBytes(dataKeyBytes);
  try {
    const privateSealed = seal(sealKey, 1, pkcs8, sealContext);
    try {
      return { certificatePem: pem, privateSealed, privateWrappedKey: await rootKeys.wrap(sealKey, wrapContext) };
    } catch (error) {
      throw rootKeyProblem(error);
    }
  } finally {
    sealKey.fill(0);
  }
}

async function unseal(stored: StoredCa, rootKeys: RootKeyProvider): Promise<CertificateAuthority> {
  let certificate: PeculiarCertificate;
  try {
    certificate = parseCertificate(stored.certificatePem);
  } catch (error) {
    throw integrityProblem('the stored CA certificate does not parse', error);
  }
  let sealKey: Buffer;
  try {
    sealKey = await rootKeys.unwrap(stored.privateWrappedKey, wrapContext);
  } catch (error) {
    throw rootKeyProblem(error);
  }
  let der: Buffer;
  try {
    der = open(stored.privateSealed, sealContext, (version) => (version === 1 ? sealKey : undefined));
  } catch (error) {
    if (error instanceof EnvelopeError) throw integrityProblem(`sealed CA key ${error.reason}`, error);
    throw error;
  } finally {
    sealKey.fill(0);
  }
  try {
    // A key that is not the certificate's would sign server certificates no client can verify.
    let matches: boolean;
    try {
      const publicKey = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
      matches = publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1' && publicKey.export({ format: 'der', type: 'spki' }).equals(spkiOf(certificate));
    } catch (error) {
      throw integrityProblem('the CA private key does not parse', error);
    }
    if (!matches) throw integrityProblem('the CA private key does not match its certificate');
    const signingKey = await webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm, false, ['sign']);
    return { certificate, pem: stored.certificatePem, signingKey };
  } finally {
    der.fill(0);
  }
}

function integrityProblem(detail: string, cause?: unknown): BulwarkError {
  return new BulwarkError('data_integrity_failed', { detail: `TLS CA: ${detail}`, cause });
}
