import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
// Imported after the issuance module, which loads reflect-metadata and sets Node's crypto as the provider.
import { keyAlgorithm as ecdsaP384, selfSignedAuthority, serialNumber as newSerial, signingAlgorithm } from '../../platform/tls/issuance.ts';
import * as x509 from '@peculiar/x509';

/**
 * The X.509 side of agent mutual TLS: each tenant's agent CA (ECDSA P-384, self-signed, path length 0),
 * the client certificates it issues over an agent's own paired Ed25519 key, and the checks the gateway
 * makes on a peer certificate. Pure functions: no storage, no clock of their own.
 */

const clientAuthOid = '1.3.6.1.5.5.7.3.2';
const dayMs = 86_400_000;
/** Issued certificates start a little in the past: instances whose clocks lag the issuer's still accept them. */
const backdateMs = 5 * 60_000;
/** The CA outlives every certificate it signs; a certificate is never issued past it (see `issueAgentCertificate`). */
export const authorityValidityDays = 3650;
const agentUriShape = /^urn:bulwark:tenant:([0-9a-f]{12}):agent:([0-9a-f]{12})$/;

/** The identity an agent certificate carries, as its only subject alternative name. */
export function agentUri(tenantId: string, agentId: string): string {
  return `urn:bulwark:tenant:${tenantId}:agent:${agentId}`;
}

export interface NewAuthority {
  /** The self-signed CA certificate, DER. */
  certificate: Buffer;
  /** Its private key, PKCS #8 DER: the caller seals it and zeroes this buffer. */
  privateKey: Buffer;
  notAfter: Date;
}

/** A new agent CA for one tenant: a fresh P-384 key, valid `authorityValidityDays` from `now`. */
export async function createAuthority(tenantId: string, now: Date): Promise<NewAuthority> {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const publicKey = keys.publicKey.toCryptoKey(ecdsaP384, true, ['verify']);
  const privateKey = keys.privateKey.toCryptoKey(ecdsaP384, false, ['sign']);
  const notAfter = new Date(now.getTime() + authorityValidityDays * dayMs);
  const certificate = await selfSignedAuthority({ publicKey, privateKey }, `CN=Bulwark agent CA, O=tenant ${tenantId}`, new Date(now.getTime() - backdateMs), notAfter);
  return { certificate: Buffer.from(certificate.rawData), privateKey: keys.privateKey.export({ format: 'der', type: 'pkcs8' }), notAfter };
}

export interface IssuedCertificate {
  certificate: Buffer;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * A client certificate for one agent: over its paired Ed25519 public key (raw 32 bytes), signed by its
 * tenant's CA, the tenant and agent ids in its one URI SAN, extended key usage clientAuth only, not a CA.
 * Valid `days` from `now`, but never past the CA itself.
 */
export async function issueAgentCertificate(input: {
  authority: { certificate: Buffer; privateKey: Buffer };
  tenantId: string;
  agentId: string;
  publicKey: Buffer;
  now: Date;
  days: number;
}): Promise<IssuedCertificate> {
  const ca = new x509.X509Certificate(input.authority.certificate);
  const signingKey = createPrivateKey({ key: input.authority.privateKey, format: 'der', type: 'pkcs8' }).toCryptoKey(ecdsaP384, false, ['sign']);
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: input.publicKey.toString('base64url') }, format: 'jwk' }).toCryptoKey(
    { name: 'Ed25519' },
    true,
    ['verify'],
  );
  const serialNumber = newSerial();
  const notBefore = new Date(input.now.getTime() - backdateMs);
  const notAfter = new Date(Math.min(input.now.getTime() + input.days * dayMs, ca.notAfter.getTime()));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=agent ${input.agentId}, O=tenant ${input.tenantId}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    publicKey,
    signingKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([clientAuthOid], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: agentUri(input.tenantId, input.agentId) }], true),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  // X.509 times have second precision: report what the certificate says.
  const issued = new X509Certificate(Buffer.from(certificate.rawData));
  return { certificate: issued.raw, serialNumber, notBefore: issued.validFromDate, notAfter: issued.validToDate };
}

/** PEM text of a DER certificate. */
export function certificatePem(der: Buffer): string {
  return new X509Certificate(der).toString();
}

/**
 * The tenant and agent a peer certificate claims, from its subject alternative names: exactly one, a URI of
 * the agent form. Only a claim: `checkAgentCertificate` decides whether the certificate proves it.
 */
export function claimedAgent(peer: X509Certificate): { tenantId: string; agentId: string } | undefined {
  // Node lists the names as `URI:...`, comma-separated (values with special characters quoted): one plain name only.
  const match = /^URI:(.+)$/.exec(peer.subjectAltName ?? '');
  const uri = match?.[1] === undefined ? undefined : agentUriShape.exec(match[1]);
  const [, tenantId, agentId] = uri ?? [];
  // The URI's shape already holds both ids to the id format.
  if (tenantId === undefined || agentId === undefined) return undefined;
  return { tenantId, agentId };
}

/**
 * What a peer certificate must be, apart from its signature (checked by the caller, which caches it): issued
 * by this CA (names and key identifiers), within its validity and the CA's at `now`, not a CA itself, for
 * clientAuth, over an Ed25519 key. Answers the raw public key, or undefined.
 */
export function checkAgentCertificate(peer: X509Certificate, ca: X509Certificate, now: Date): Buffer | undefined {
  const at = now.getTime();
  if (peer.ca || !peer.checkIssued(ca)) return undefined;
  if (peer.validFromDate.getTime() > at || peer.validToDate.getTime() <= at) return undefined;
  if (ca.validFromDate.getTime() > at || ca.validToDate.getTime() <= at) return undefined;
  // Node's typing says an array, but a certificate without the extension gives undefined.
  const extendedKeyUsage = peer.keyUsage as readonly string[] | undefined;
  if (extendedKeyUsage?.includes(clientAuthOid) !== true) return undefined;
  if (peer.publicKey.asymmetricKeyType !== 'ed25519') return undefined;
  const x = peer.publicKey.export({ format: 'jwk' }).x;
  return x === undefined ? undefined : Buffer.from(x, 'base64url');
}
