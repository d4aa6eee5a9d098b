// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * Certificates of the self-managed TLS mode, issued with @peculiar/x509 over Node's WebCrypto: the local CA
 * (created once per deployment) and the server certificates each instance issues itself from it. Pure
 * crypto, no storage: `local-ca.ts` keeps the CA in the database. Agent CAs (agents/certificates.ts) share
 * the algorithms, serials and CA shape from here.
 */

// The library defaults to the global crypto; Node's is the same object, set explicitly so no other provider
// (a test's, a polyfill's) is ever picked up.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** ECDSA on P-384 with SHA-384 for every CA and server key and signature Bulwark issues (agent CAs included). */
export const keyAlgorithm = { name: 'ECDSA', namedCurve: 'P-384' } as const;
export const signingAlgorithm = { name: 'ECDSA', hash: 'SHA-384' } as const;

const caLifetimeMs = 10 * 365 * 86_400_000;
/** The longest server-certificate lifetime (BULWARK_TLS_CERT_DAYS caps at it too). */
const maxServerLifetimeMs = 90 * 86_400_000;

/** The CA in use: its certificate and the key that signs server certificates (non-extractable). */
export interface CertificateAuthority {
  certificate: x509.X509Certificate;
  pem: string;
  signingKey: webcrypto.CryptoKey;
}

/** What a TLS listener serves: PEM certificate and key, and the parsed certificate for decisions and logs. */
export interface ServingCertificate {
  cert: string;
  key: string;
  certificate: X509Certificate;
}

/** A fresh CA: its certificate, its signing key, and the PKCS#8 DER of that key for sealing (the caller zeroes it). */
export async function createCertificateAuthority(now: Date): Promise<CertificateAuthority & { pkcs8: Buffer }> {
  const keys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  // The random part of the name tells one deployment's CA from another's in a client's trust store.
  const certificate = await selfSignedAuthority(keys, `CN=Bulwark local CA ${randomBytes(6).toString('hex')}, O=Bulwark`, now, new Date(now.getTime() + caLifetimeMs));
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  // The signing key kept in memory is a non-extractable copy: nothing can export it again.
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, keyAlgorithm, false, ['sign']);
  return { certificate, pem: certificate.toString('pem'), signingKey, pkcs8 };
}

/** A self-signed CA certificate over `keys` that signs end-entity certificates only (path length 0). */
export async function selfSignedAuthority(keys: webcrypto.CryptoKeyPair, name: string, notBefore: Date, notAfter: Date): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

/**
 * A server certificate for `names` (DNS names and IP addresses), valid for `lifetimeMs`: ECDSA P-384, EKU
 * serverAuth only, never beyond the CA's own expiry. notBefore is backdated by 1% of the lifetime (at most an
 * hour) so a client whose clock lags a little accepts a certificate issued a moment ago.
 */
export async function issueServerCertificate(ca: CertificateAuthority, names: readonly string[], now: Date, lifetimeMs: number): Promise<ServingCertificate> {
  if (names.length === 0) throw new TypeError('a server certificate needs at least one name');
  if (lifetimeMs <= 0 || lifetimeMs > maxServerLifetimeMs) throw new TypeError('server certificate lifetime out of range');
  const keys = await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify']);
  const notBefore = new Date(now.getTime() - Math.min(3_600_000, Math.floor(lifetimeMs / 100)));
  const notAfter = new Date(Math.min(notBefore.getTime() + lifetimeMs, ca.certificate.notAfter.getTime()));
  if (notAfter.getTime() <= now.getTime()) throw new Error(`the TLS CA expired at ${ca.certificate.notAfter.toISOString()}`);
  const [first = ''] = names;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${isIP(first) === 0 ? first : 'Bulwark server'}`,
    issuer: ca.certificate.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((name) => (isIP(name) === 0 ? { type: 'dns' as const, value: name } : { type: 'ip' as const, value: name }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  try {
    const cert = certificate.toString('pem');
    return { cert, key: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), certificate: new X509Certificate(cert) };
  } finally {
    pkcs8.fill(0);
  }
}

/** SHA-256 of the certificate's DER, as `AA:BB:...` (what browsers and `openssl x509 -fingerprint -sha256` show). */
export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** A PEM certificate as @peculiar/x509 reads it (throws when it does not parse). */
export function parseCertificate(pem: string): x509.X509Certificate {
  return new x509.X509Certificate(pem);
}

/** The CA's certificate public key as SPKI DER, to check that a stored private key belongs to it. */
export function spkiOf(certificate: x509.X509Certificate): Buffer {
  return Buffer.from(certificate.publicKey.rawData);
}

/** 128 random bits, positive (RFC 5280 4.1.2.2: at most 20 octets; CA/B: at least 64 bits of entropy). */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes.toString('hex');
}
