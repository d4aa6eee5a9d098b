import { Type, type Static } from 'typebox';
import { idPattern } from '../../platform/ids.ts';
import { tenantId } from '../tenancy/schemas.ts';

export const agentId = Type.String({ pattern: idPattern, description: 'Agent id: 12 lowercase hex characters.' });
export const agentParams = Type.Object({ tenantId, agentId }, { additionalProperties: false });
export const gatewayParams = Type.Object({ agentId }, { additionalProperties: false });

/**
 * The pairing code alphabet: digits and capitals without 0, O, 1, I and L, which people misread and mistype.
 * 31 symbols, 8 of them: 31^8 ≈ 8.5 × 10^11 codes (39.6 bits).
 */
export const pairingAlphabet = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';
export const pairingCodeLength = 8;

const agentName = Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\p{C}]*\\S[^\\p{C}]*$', description: 'Shown in the agent list, e.g. the host name.' });

export const createPairingCodeBody = Type.Object(
  {
    name: Type.Optional(Type.Unsafe<string>({ ...agentName, description: 'The name the agent gets when it does not send one.' })),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 3600, description: 'How long the code may be used (default BULWARK_AGENT_PAIRING_TTL_SECONDS).' })),
  },
  { additionalProperties: false },
);
export type CreatePairingCodeBody = Static<typeof createPairingCodeBody>;

export const pairingCode = Type.Object({
  id: Type.String(),
  code: Type.String({ description: 'Shown once: 8 characters; only its keyed hash is stored. Give it to the agent (`bulwark agent pair --code`).' }),
  name: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.String({ format: 'date-time' }),
  createdAt: Type.String({ format: 'date-time' }),
});
export type PairingCode = Static<typeof pairingCode>;

export const livePairingCode = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.String({ format: 'date-time' }),
  createdAt: Type.String({ format: 'date-time' }),
});
export type LivePairingCode = Static<typeof livePairingCode>;
export const withdrawnCodes = Type.Object({ withdrawn: Type.Integer({ description: 'How many unexpired codes were withdrawn.' }) });

export const publicKey = Type.Object(
  {
    type: Type.Union([Type.Literal('ed25519'), Type.Literal('x25519')]),
    key: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'The raw 32-byte public key, base64url without padding. It must be a valid point of large order.' }),
  },
  { additionalProperties: false },
);

export const pairBody = Type.Object(
  {
    code: Type.String({
      pattern: `^[${pairingAlphabet}${pairingAlphabet.toLowerCase()}]{4}-?[${pairingAlphabet}${pairingAlphabet.toLowerCase()}]{4}$`,
      description: 'The pairing code; case does not matter, a hyphen in the middle is allowed.',
    }),
    name: Type.Optional(agentName),
    publicKey,
  },
  { additionalProperties: false },
);
export type PairBody = Static<typeof pairBody>;

export const busCredentials = Type.Union([
  Type.Object({ kind: Type.Literal('http') }, { description: 'Reach the bus through `POST /v1/agents/{agentId}/messages` with the agent token.' }),
  Type.Object(
    {
      kind: Type.Literal('nats'),
      servers: Type.Array(Type.String()),
      creds: Type.String({ description: 'The NATS credentials (user JWT and seed), shown once.' }),
      userKey: Type.String({ description: 'The NATS user public key.' }),
    },
    { description: 'Connect to NATS with these credentials; they allow only this agent’s subjects.' },
  ),
]);

/** A client certificate for mutual TLS with the gateway: public data (the private key never leaves the agent). */
export const agentCertificate = Type.Object(
  {
    certificate: Type.String({ description: "PEM: the agent's client certificate, over the Ed25519 key it paired with, signed by its tenant's agent CA." }),
    caCertificate: Type.String({ description: "PEM: the tenant's agent CA (ECDSA P-384), which signed it." }),
    serialNumber: Type.String({ description: 'The certificate serial number, 32 lowercase hex characters.' }),
    uri: Type.String({ description: 'Its only subject alternative name: `urn:bulwark:tenant:<tenantId>:agent:<agentId>`.' }),
    notBefore: Type.String({ format: 'date-time' }),
    notAfter: Type.String({ format: 'date-time', description: 'BULWARK_AGENT_CERTIFICATE_DAYS after issue; renew before (`POST /v1/agents/{agentId}/certificate`).' }),
  },
  { description: 'Extended key usage clientAuth only; not a CA. Present it in the TLS handshake to the gateway instead of the token.' },
);
export type AgentCertificate = Static<typeof agentCertificate>;

export const pairing = Type.Object({
  agentId: Type.String(),
  tenantId: Type.String(),
  name: Type.String(),
  credentials: Type.Object({
    token: Type.String({ description: 'The agent token (`bwag_...`), shown once; only its hash is stored.' }),
    bus: busCredentials,
  }),
  certificate: Type.Union([agentCertificate, Type.Null({ description: 'An agent paired with an X25519 key: that key cannot sign a TLS handshake.' })]),
});
export type Pairing = Static<typeof pairing>;

const health = Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('down')]);

export const agent = Type.Object({
  id: Type.String(),
  name: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('revoked')]),
  stale: Type.Boolean({ description: 'Active, and silent longer than BULWARK_AGENT_STALE_SECONDS.' }),
  lastSeenAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Its last valid report of any kind.' }),
  health: Type.Union([
    Type.Object({ status: health, message: Type.Union([Type.String(), Type.Null()]), changedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]) }),
    Type.Null(),
  ]),
  stats: Type.Union([
    Type.Object({ values: Type.Unsafe<Record<string, number>>({ type: 'object', additionalProperties: { type: 'number' } }), reportedAt: Type.String({ format: 'date-time' }) }),
    Type.Null(),
  ]),
  publicKey: Type.Object({ type: Type.String(), key: Type.String() }),
  bus: Type.Union([Type.Literal('nats'), Type.Literal('http')]),
  pairedAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  certificate: Type.Union([Type.Object({ serialNumber: Type.String(), notAfter: Type.String({ format: 'date-time' }) }), Type.Null()], {
    description: 'The client certificate issued last (at pairing or renewal); null when none was.',
  }),
});
export type Agent = Static<typeof agent>;

export const gatewayBody = Type.Object(
  {
    subject: Type.String({ minLength: 1, maxLength: 256, pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$', description: 'One of the agent’s own subjects (`bulwark.t.<tenantId>.agents.<agentId>.heartbeat`, ...).' }),
    payload: Type.Unknown({ description: 'Any JSON value; the reports are checked by their subscriber.' }),
  },
  { additionalProperties: false },
);

// --- what agents report on the bus (checked by the server's subscriber, not by a route) ---

export const maxReportBytes = 8 * 1024;

export const heartbeatReport = Type.Object(
  {
    sentAt: Type.Optional(Type.String({ format: 'date-time', maxLength: 40 })),
    uptimeSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e10 })),
    version: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const healthReport = Type.Object(
  {
    status: health,
    message: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);

/** Named numbers (load, queue depths, bytes): at most 64, names of letters, digits, `_`, `.` and `-`. */
export const statsReport = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.Number(), { maxProperties: 64, additionalProperties: false });
