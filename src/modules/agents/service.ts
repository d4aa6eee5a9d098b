import { createHash, randomBytes, randomInt, X509Certificate } from 'node:crypto';
import type { Static } from 'typebox';
import { Compile } from 'typebox/compile';
import type { Clock } from '../../platform/clock.ts';
import { type Database, type Queryable, toBuffer } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import type { Actor } from '../../platform/http/request-context.ts';
import { isId, newId } from '../../platform/ids.ts';
import { digestsEqual } from '../../platform/secret-compare.ts';
import type { AuditRecorder, AuditService } from '../audit/service.ts';
import type { AgentBusAccess } from '../bus/access.ts';
import type { Bus } from '../bus/bus.ts';
import type { EnvelopeContext } from '../keys/envelope.ts';
import type { PlatformKey, PlatformKeys } from '../keys/platform-keys.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../keys/service.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import { certificatePem, checkAgentCertificate, claimedAgent, createAuthority, issueAgentCertificate, agentUri } from './certificates.ts';
import { isValidAgentKey } from './public-key.ts';
import {
  type Agent,
  type AgentCertificate,
  type CreatePairingCodeBody,
  type LivePairingCode,
  heartbeatReport,
  healthReport,
  maxReportBytes,
  type PairBody,
  type Pairing,
  type PairingCode,
  pairingAlphabet,
  pairingCodeLength,
  statsReport,
} from './schemas.ts';
import {
  agentCertificateCredentialSql,
  type AgentCertificateCredentialRow,
  type AgentCredentialRow,
  agentCredentialSql,
  type AgentRow,
  type AuthorityRow,
  consumePairingCode,
  countAuthoritiesByKeyVersion,
  countLivePairingCodes,
  findAuthority,
  insertAuthority,
  lockStaleAuthority,
  resealAuthority,
  setAgentCertificate,
  findAgent,
  findPairingCodeTenant,
  findSilentAgents,
  insertAgent,
  insertPairingCode,
  deletePairingCodes,
  listAgents,
  listLivePairingCodes,
  lockActiveAgent,
  markSeen,
  markStale,
  pruneThrottles,
  releasePairingAttempt,
  reservePairingAttempt,
  revokeAgent,
  setHealth,
  setStats,
} from './store.ts';

export interface AgentsOptions {
  /** Default lifetime of a pairing code. */
  pairingTtlSeconds: number;
  /** Unexpired codes per tenant. */
  pairingMaxLiveCodes: number;
  /** Wrong codes per client address and window before the address is refused. */
  pairingMaxFailures: number;
  pairingWindowSeconds: number;
  /** Silence after which an active agent is stale. */
  staleSeconds: number;
  /** Lifetime of the client certificates issued at pairing and renewal. */
  certificateDays: number;
}

type AgentsAudit = AuditRecorder & Pick<AuditService, 'prepareSubject'>;

/** The agent a token belongs to: checked on every gateway message, uncached, so a revocation holds at once. */
export interface AgentIdentity {
  tenantId: string;
  agentId: string;
}

export type ReportKind = 'heartbeat' | 'health' | 'stats';
export type ReportOutcome = 'recorded' | 'ignored';

const sha256 = (value: string) => createHash('sha256').update(value).digest();
const sha256Hex = (value: Buffer) => createHash('sha256').update(value).digest('hex');
const agentTokenShape = /^bwag_([0-9a-f]{12})([0-9a-f]{12})([A-Za-z0-9_-]{43})$/;
const reportKinds: readonly ReportKind[] = ['heartbeat', 'health', 'stats'];
const checks = { heartbeat: Compile(heartbeatReport), health: Compile(healthReport), stats: Compile(statsReport) };
const sweepBatch = 500;
/** Every instance shares the reports: one of them handles each (NATS queue group). */
const reportQueue = 'bulwark-agent-reports';

const invalidPairingCode = () => new BulwarkError('invalid_pairing_code', { message: 'The pairing code is unknown, spent or expired; ask for a new one.' });

/** Upper case, without the optional hyphen: the form the keyed hash is taken of. */
function normalizePairingCode(code: string): string {
  return code.replace('-', '').toUpperCase();
}

function newPairingCode(): string {
  // randomInt draws from the CSPRNG without modulo bias.
  return Array.from({ length: pairingCodeLength }, () => pairingAlphabet[randomInt(pairingAlphabet.length)]).join('');
}

const agentActor = (agentId: string): Actor => ({ kind: 'agent', id: agentId });

/** Where a tenant's CA private key is sealed: one row per tenant, so the tenant id names the row. */
const authorityKeyContext = (tenantId: string): EnvelopeContext => ({ tenantId, table: 'agent_certificate_authorities', column: 'private_key', rowId: tenantId });
/**
 * A P-384 signature check costs about 1 ms (measured: 1.1 ms on the dev VM, against 20 µs to parse the
 * certificate): a peer certificate whose signature verified under a CA is remembered by the two DER digests,
 * a fact that cannot go stale; so is each CA certificate parsed, by its digest. Everything else (validity,
 * usage, the agent's status and key) is checked every time.
 */
const verifiedTtlMs = 3_600_000;
const verifiedSignatureMax = 10_000;
const parsedAuthorityMax = 1_000;

/**
 * Agents: pairing codes (short, random, single use, expiring, kept as keyed hashes), pairing (the code is
 * the credential; the answer is the agent token and the bus credentials), the agents' reports from the
 * bus (heartbeat, health, stats of active agents of the subject's own tenant), the stale sweep, and
 * revocation (the token at once, the bus access through AgentBusAccess). Pairing attempts are limited per
 * client address: a wrong code names no code, so there is nothing else to count against (docs/agents.md).
 */
export class AgentsService implements Reencryptor {
  readonly name = 'agent_certificate_authorities';
  readonly #db: Database;
  readonly #platformKeys: PlatformKeys;
  readonly #audit: AgentsAudit;
  readonly #busAccess: AgentBusAccess;
  readonly #keyring: Pick<KeyringService, 'withKeys'>;
  readonly #tenantStatus: (tenantId: string) => Promise<string | null>;
  readonly #clock: Clock;
  readonly #options: AgentsOptions;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #onBackgroundError: (error: unknown, message: string) => void;
  /** Hex SHA-256 of a peer certificate's DER → hex SHA-256 of the CA certificate its signature verified under. */
  readonly #verifiedSignatures: TtlCache<string>;
  /** Hex SHA-256 of a CA certificate's DER → the certificate, parsed. */
  readonly #parsedAuthorities: TtlCache<X509Certificate>;

  constructor(
    db: Database,
    platformKeys: PlatformKeys,
    audit: AgentsAudit,
    services: { busAccess: AgentBusAccess; keyring: Pick<KeyringService, 'withKeys' | 'registerReencryptor'>; tenantStatus: (tenantId: string) => Promise<string | null> },
    clock: Clock,
    options: AgentsOptions & { onBackgroundError?: (error: unknown, message: string) => void },
  ) {
    this.#db = db;
    this.#platformKeys = platformKeys;
    this.#audit = audit;
    this.#busAccess = services.busAccess;
    this.#keyring = services.keyring;
    this.#tenantStatus = services.tenantStatus;
    this.#clock = clock;
    this.#options = options;
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
    this.#verifiedSignatures = new TtlCache(verifiedTtlMs, verifiedSignatureMax, clock);
    this.#parsedAuthorities = new TtlCache(verifiedTtlMs, parsedAuthorityMax, clock);
    services.keyring.registerReencryptor(this);
  }

  // --- pairing codes ---

  async createPairingCode(tenantId: string, input: CreatePairingCodeBody): Promise<PairingCode> {
    const key = await this.#key();
    const now = this.#clock.now();
    const expiresAt = new Date(now.getTime() + (input.ttlSeconds ?? this.#options.pairingTtlSeconds) * 1000);
    return this.#db.withTenant(tenantId, async (tx) => {
      if ((await countLivePairingCodes(tx, tenantId, now)) >= this.#options.pairingMaxLiveCodes) {
        throw new BulwarkError('conflict', { message: `A tenant holds at most ${this.#options.pairingMaxLiveCodes} unexpired pairing codes; use one or let them expire.` });
      }
      // A colliding id or code (the code's hash is unique across tenants) draws again.
      for (let attempt = 0; attempt < 5; attempt += 1) {
        const code = newPairingCode();
        const row = await insertPairingCode(tx, { tenantId, id: newId(), codeHmac: codeHash(key, code), nameHint: input.name ?? null, expiresAt, now });
        if (row === undefined) continue;
        await this.#audit.record(tx, { tenantId }, { action: 'pairing-code.create', target: { type: 'pairing-code', id: row.id }, detail: { expiresAt: expiresAt.toISOString() } });
        return { id: row.id, code, name: row.name_hint, expiresAt: row.expires_at.toISOString(), createdAt: row.created_at.toISOString() };
      }
      throw new BulwarkError('internal_error', { detail: 'no free pairing code after 5 attempts' });
    });
  }

  async listPairingCodes(tenantId: string, limit: number, cursor: string | undefined): Promise<{ items: LivePairingCode[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withTenant(tenantId, (tx) => listLivePairingCodes(tx, tenantId, this.#clock.now(), after, limit + 1));
    return toPage(rows, limit, (row) => ({ id: row.id, name: row.name_hint, expiresAt: row.expires_at.toISOString(), createdAt: row.created_at.toISOString() }));
  }

  /** Withdraws every pairing code of the tenant (a code was seen where it should not have been). */
  async withdrawPairingCodes(tenantId: string): Promise<{ withdrawn: number }> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const withdrawn = await deletePairingCodes(tx, tenantId, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'pairing-code.delete', detail: { withdrawn } });
      return { withdrawn };
    });
  }

  // --- pairing ---

  /**
   * The pairing steps: validate the key, reserve a check for the client address (refused once it spent
   * its budget of wrong codes), find the code's tenant in the platform scope, issue the bus credentials,
   * then spend the code, create the agent and audit it in one transaction of that tenant. A right code
   * gives the reservation back.
   */
  async pair(input: PairBody, source: string): Promise<Pairing> {
    // 1. Validate: a key that is no usable point is bad input, and costs no attempt.
    const rawKey = Buffer.from(input.publicKey.key, 'base64url');
    if (!isValidAgentKey(input.publicKey.type, rawKey)) {
      throw new BulwarkError('validation_failed', {
        message: `publicKey is not a valid ${input.publicKey.type} public key.`,
        extensions: { errors: [{ in: 'body', path: '/publicKey/key', message: 'must be a valid point of large order' }] },
      });
    }
    const key = await this.#key();
    const codeHmac = codeHash(key, normalizePairingCode(input.code));
    const sourceHmac = key.lookupHash(`pairing-source:${source}`);
    const now = this.#clock.now();

    // 2. Reserve the check: parallel guesses each need one.
    const window = { ms: this.#options.pairingWindowSeconds * 1000, maxFailures: this.#options.pairingMaxFailures };
    const reserved = await this.#db.withPlatform((tx) => reservePairingAttempt(tx, sourceHmac, now, window));
    if ('blockedUntil' in reserved) {
      const seconds = Math.max(1, Math.ceil((reserved.blockedUntil.getTime() - now.getTime()) / 1000));
      throw new BulwarkError('too_many_attempts', { message: `Too many wrong pairing codes from this address; retry in ${seconds} s.`, headers: { 'retry-after': String(seconds) } });
    }

    // 3. Load: which tenant holds the code (the request names none).
    const found = await this.#db.withPlatform((tx) => findPairingCodeTenant(tx, codeHmac));
    if (found === undefined) throw invalidPairingCode();
    const { tenant_id: tenantId } = found;
    if (found.expires_at.getTime() <= now.getTime()) {
      await this.#audit.recordAlone({ tenantId }, { action: 'agent.pair', outcome: 'failure', actor: { kind: 'anonymous', id: null }, target: { type: 'pairing-code', id: found.id }, detail: { reason: 'expired' } });
      throw invalidPairingCode();
    }
    // 4. Preconditions: the tenant takes new agents only while active.
    const status = await this.#tenantStatus(tenantId);
    if (status === 'suspended' || status === 'offboarding') throw new BulwarkError('tenant_suspended');
    if (status !== 'active') throw invalidPairingCode();

    const agentId = newId();
    const secret = randomBytes(32).toString('base64url');
    const token = `bwag_${tenantId}${agentId}${secret}`;
    let bus: Awaited<ReturnType<AgentBusAccess['issue']>>;
    try {
      bus = await this.#busAccess.issue(tenantId, agentId);
    } catch (error) {
      throw new BulwarkError('service_unavailable', { message: 'The bus credentials could not be issued; retry.', cause: error });
    }
    await this.#audit.prepareSubject({ tenantId }, agentActor(agentId));
    // 5. Mutate and audit: the code is spent once (a parallel pairing with the same code finds nothing). An
    //    Ed25519 agent gets its client certificate in the same transaction; an X25519 key cannot sign a handshake.
    const mutate = (keys: TenantKeys | undefined) => this.#db.withTenant(tenantId, async (tx) => {
      const code = await consumePairingCode(tx, tenantId, codeHmac, now);
      if (code === undefined) throw invalidPairingCode();
      const name = input.name ?? code.name_hint ?? `agent-${agentId}`;
      const row = await insertAgent(tx, {
        tenantId,
        id: agentId,
        name,
        tokenHash: sha256(secret),
        publicKey: { type: input.publicKey.type, key: rawKey },
        bus: bus.kind === 'nats' ? { kind: 'nats', userKey: bus.userKey } : { kind: 'http', userKey: null },
        now,
      });
      // 48-bit ids collide about once in 16M agents: the pairing fails and changes nothing, the code stays.
      if (row === undefined) throw new BulwarkError('conflict', { message: 'Pairing collided with another; retry with the same code.', detail: 'agent id collision' });
      const issued = keys === undefined ? undefined : await this.#issueCertificate(tx, keys, { tenantId, agentId, publicKey: rawKey }, now);
      await this.#audit.record(tx, { tenantId }, {
        action: 'agent.pair',
        actor: agentActor(agentId),
        target: { type: 'agent', id: agentId },
        detail: { pairingCodeId: code.id, name, bus: bus.kind, publicKeyType: input.publicKey.type, certificate: issued === undefined ? null : certificateDetail(issued) },
      });
      return { name: row.name, certificate: issued?.certificate ?? null };
    });
    const agent = input.publicKey.type === 'ed25519' ? await this.#keyring.withKeys(tenantId, mutate) : await mutate(undefined);
    await this.#db.withPlatform((tx) => releasePairingAttempt(tx, sourceHmac));
    return { agentId, tenantId, name: agent.name, credentials: { token, bus }, certificate: agent.certificate };
  }

  // --- certificates ---

  /**
   * A fresh client certificate for an authenticated agent (its token or its current certificate), over the
   * key it paired with, audited as `agent.certificate.issue`. Earlier certificates stay valid until they
   * expire: they name the same key, so only its holder can use them.
   */
  async renewCertificate(identity: AgentIdentity): Promise<AgentCertificate> {
    const { tenantId, agentId } = identity;
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        // Revoked since the hook checked it: the same answer as a revoked agent's credential.
        const row = await findAgent(tx, tenantId, agentId, { forUpdate: true });
        if (row?.status !== 'active') throw new BulwarkError('invalid_credentials');
        if (row.public_key_type !== 'ed25519') {
          throw new BulwarkError('conflict', { message: 'This agent paired with an X25519 key, which cannot sign a TLS handshake; certificates need an agent paired with an Ed25519 key.' });
        }
        const issued = await this.#issueCertificate(tx, keys, { tenantId, agentId, publicKey: row.public_key }, this.#clock.now());
        await this.#audit.record(tx, { tenantId }, { action: 'agent.certificate.issue', actor: agentActor(agentId), target: { type: 'agent', id: agentId }, detail: certificateDetail(issued) });
        return issued.certificate;
      }),
    );
  }

  /**
   * The agent a TLS peer certificate proves, or null. The handshake proved possession of the certificate's
   * key; this checks the rest, uncached where it can change: the SAN names an agent of a tenant; that agent
   * exists and is active (read on every use, like the token, so a revocation holds at once); the certificate
   * was issued by that tenant's CA (names, key identifiers, signature), is valid now, is for clientAuth and is
   * no CA; and its key is the agent's paired Ed25519 key.
   */
  async authenticateCertificate(peer: X509Certificate): Promise<AgentIdentity | null> {
    const claim = claimedAgent(peer);
    if (claim === undefined) return null;
    const { rows } = await this.#db.tenantQuery<AgentCertificateCredentialRow>(claim.tenantId, agentCertificateCredentialSql, [claim.tenantId, claim.agentId]);
    const row = rows[0];
    if (row?.status !== 'active' || row.public_key_type !== 'ed25519' || row.authority === null) return null;
    const authority = toBuffer(row.authority);
    const authorityDigest = sha256Hex(authority);
    let ca = this.#parsedAuthorities.get(authorityDigest);
    if (ca === undefined) {
      ca = new X509Certificate(authority);
      this.#parsedAuthorities.set(authorityDigest, ca);
    }
    const key = checkAgentCertificate(peer, ca, this.#clock.now());
    if (key === undefined || !key.equals(toBuffer(row.public_key))) return null;
    return this.#signedBy(peer, ca, authorityDigest) ? claim : null;
  }

  #signedBy(peer: X509Certificate, ca: X509Certificate, authorityDigest: string): boolean {
    const peerDigest = sha256Hex(peer.raw);
    if (this.#verifiedSignatures.get(peerDigest) === authorityDigest) return true;
    if (!peer.verify(ca.publicKey)) return false;
    this.#verifiedSignatures.set(peerDigest, authorityDigest);
    return true;
  }

  /** Issues the agent's certificate in the caller's transaction, creating the tenant's CA on first need, and records it on the agent. */
  async #issueCertificate(
    tx: Queryable,
    keys: TenantKeys,
    agent: { tenantId: string; agentId: string; publicKey: Buffer },
    now: Date,
  ): Promise<{ certificate: AgentCertificate; authorityCreated: boolean }> {
    const { tenantId, agentId } = agent;
    const { authority, created } = await this.#authority(tx, keys, tenantId, now);
    const privateKey = keys.open(authority.private_key, authorityKeyContext(tenantId), 'data_integrity_failed');
    let issued: Awaited<ReturnType<typeof issueAgentCertificate>>;
    try {
      issued = await issueAgentCertificate({ authority: { certificate: authority.certificate, privateKey }, tenantId, agentId, publicKey: agent.publicKey, now, days: this.#options.certificateDays });
    } finally {
      privateKey.fill(0);
    }
    await setAgentCertificate(tx, tenantId, agentId, issued);
    return {
      certificate: {
        certificate: certificatePem(issued.certificate),
        caCertificate: certificatePem(authority.certificate),
        serialNumber: issued.serialNumber,
        uri: agentUri(tenantId, agentId),
        notBefore: issued.notBefore.toISOString(),
        notAfter: issued.notAfter.toISOString(),
      },
      authorityCreated: created,
    };
  }

  /**
   * The tenant's CA, made on first need: a new one is sealed under the tenant's current key and inserted
   * unless a racing transaction stored one first (it waits on the primary key), in which case that one is read.
   */
  async #authority(tx: Queryable, keys: TenantKeys, tenantId: string, now: Date): Promise<{ authority: AuthorityRow; created: boolean }> {
    const existing = await findAuthority(tx, tenantId);
    if (existing !== undefined) return { authority: existing, created: false };
    const fresh = await createAuthority(tenantId, now);
    try {
      const sealed = keys.seal(fresh.privateKey, authorityKeyContext(tenantId));
      if (await insertAuthority(tx, { tenantId, certificate: fresh.certificate, sealed, notAfter: fresh.notAfter, now })) {
        return { authority: { certificate: fresh.certificate, private_key: sealed.ciphertext, key_version: sealed.keyVersion }, created: true };
      }
    } finally {
      fresh.privateKey.fill(0);
    }
    const winner = await findAuthority(tx, tenantId);
    if (winner === undefined) throw new BulwarkError('internal_error', { detail: 'agent CA neither inserted nor found' });
    return { authority: winner, created: false };
  }

  // --- Reencryptor: the CA private keys follow the tenant's key rotation ---

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countAuthoritiesByKeyVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    if (limit < 1) return 0;
    return this.#db.withTenant(tenantId, async (tx) => {
      const sealed = await lockStaleAuthority(tx, tenantId, keys.current, keys.minDecryption);
      if (sealed === undefined) return 0;
      const context = authorityKeyContext(tenantId);
      const privateKey = keys.open(sealed, context, 'data_integrity_failed');
      try {
        await resealAuthority(tx, tenantId, keys.seal(privateKey, context));
      } finally {
        privateKey.fill(0);
      }
      return 1;
    });
  }

  // --- agents ---

  async list(tenantId: string, limit: number, cursor: string | undefined): Promise<{ items: Agent[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withTenant(tenantId, (tx) => listAgents(tx, tenantId, after, limit + 1));
    const now = this.#clock.now();
    return toPage(rows, limit, (row) => this.#toAgent(row, now));
  }

  async get(tenantId: string, agentId: string): Promise<Agent> {
    const row = await this.#db.withTenant(tenantId, (tx) => findAgent(tx, tenantId, agentId));
    if (row === undefined) throw notFound();
    return this.#toAgent(row, this.#clock.now());
  }

  /**
   * Revokes an agent: its token stops at once (every use reads the row), and its bus access is cut inside
   * the same transaction, so a failure to cut it changes nothing and the call can be repeated. Revoking a
   * revoked agent changes nothing.
   */
  async revoke(tenantId: string, agentId: string): Promise<void> {
    await this.#revoke(tenantId, agentId, {});
  }

  /**
   * Offboarding: revokes every active agent of the tenant, each as `revoke` does (the token at once, the
   * bus access inside its transaction, audited); answers how many it revoked. Run again after a failure,
   * it revokes what is still active.
   */
  async revokeAll(tenantId: string): Promise<number> {
    let revoked = 0;
    let after = '';
    for (;;) {
      const page = await this.#db.withTenant(tenantId, (tx) => listAgents(tx, tenantId, after, sweepBatch));
      for (const agent of page) {
        if (agent.status === 'active' && (await this.#revoke(tenantId, agent.id, { reason: 'offboarding' }))) revoked += 1;
      }
      const last = page.at(-1);
      if (last === undefined || page.length < sweepBatch) return revoked;
      after = last.id;
    }
  }

  /** Whether this call revoked the agent (false: it was revoked already). */
  async #revoke(tenantId: string, agentId: string, detail: { reason?: string }): Promise<boolean> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const row = await findAgent(tx, tenantId, agentId, { forUpdate: true });
      if (row === undefined) throw notFound();
      const revoked = await revokeAgent(tx, tenantId, agentId, this.#clock.now());
      if (revoked === undefined) return false;
      await this.#audit.record(tx, { tenantId }, { action: 'agent.revoke', target: { type: 'agent', id: agentId }, detail: { bus: row.bus_kind, ...detail } });
      try {
        await this.#busAccess.revoke(tenantId, agentId, revoked.bus_user_key);
      } catch (error) {
        throw new BulwarkError('service_unavailable', { message: "The agent's bus access could not be cut; nothing changed, retry.", cause: error });
      }
      return true;
    });
  }

  /** The agent of a `bwag_` token, if the token is right and the agent active; null otherwise. */
  async authenticate(token: string): Promise<AgentIdentity | null> {
    const match = agentTokenShape.exec(token);
    if (match === null) return null;
    const [, tenantId = '', agentId = '', secret = ''] = match;
    const { rows } = await this.#db.tenantQuery<AgentCredentialRow>(tenantId, agentCredentialSql, [tenantId, agentId]);
    const row = rows[0];
    if (row === undefined || !digestsEqual(sha256(secret), toBuffer(row.token_hash)) || row.status !== 'active') return null;
    return { tenantId, agentId };
  }

  /** Whether a tenant takes its agents' messages (the gateway refuses a suspended tenant's agents). */
  async tenantActive(tenantId: string): Promise<boolean> {
    return (await this.#tenantStatus(tenantId)) === 'active';
  }

  /** Makes the agent's audit subject key ready, so events of its requests keep their source address (sealed). */
  async prepareActor(identity: AgentIdentity): Promise<void> {
    await this.#audit.prepareSubject({ tenantId: identity.tenantId }, agentActor(identity.agentId));
  }

  // --- reports ---

  /** Subscribes to every agent's reports; returns the unsubscribe function. */
  listen(bus: Pick<Bus, 'subscribe'>): () => void {
    const stops = reportKinds.map((kind) =>
      bus.subscribe(
        `bulwark.t.*.agents.*.${kind}`,
        (subject, payload) => {
          this.#track(this.report(subject, payload));
        },
        { queue: reportQueue },
      ),
    );
    return () => {
      for (const stop of stops) stop();
    };
  }

  /** Resolves once every report received so far is handled (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /**
   * One report from the bus. The subject names the tenant and the agent (NATS permissions, or the gateway,
   * let an agent publish on its own subjects only); the agent must exist there and be active; the payload
   * must be small and match its kind's schema. Anything else is dropped: a report has nobody to answer to.
   */
  async report(subject: string, payload: unknown): Promise<ReportOutcome> {
    const parsed = parseReportSubject(subject);
    const report = parsed === undefined ? undefined : checkReport(parsed.kind, payload);
    if (parsed === undefined || report === undefined) return 'ignored';
    const { tenantId, agentId } = parsed;
    const now = this.#clock.now();
    const actor = agentActor(agentId);
    const target = { type: 'agent', id: agentId };
    return this.#db.withTenant(tenantId, async (tx) => {
      const before = await lockActiveAgent(tx, tenantId, agentId);
      if (before === undefined) return 'ignored';
      if (report.kind === 'health') {
        const changed = before.health !== report.health.status;
        await setHealth(tx, tenantId, agentId, { status: report.health.status, message: report.health.message ?? null, changed }, now);
        if (changed) await this.#audit.record(tx, { tenantId }, { action: 'agent.health.change', actor, target, detail: { from: before.health, to: report.health.status } });
      }
      if (report.kind === 'stats') await setStats(tx, tenantId, agentId, report.stats, now);
      await markSeen(tx, tenantId, agentId, now);
      if (before.stale) await this.#audit.record(tx, { tenantId }, { action: 'agent.stale', actor, target, detail: { stale: false } });
      return 'recorded';
    });
  }

  /**
   * Marks active agents stale once they were silent for `staleSeconds`, each audited once (a later report
   * clears the flag and records that too). The scan runs in the platform scope; each mark under the
   * agent's tenant. Also drops pairing throttles whose window ended. Answers how many agents it marked.
   */
  async sweepStale(): Promise<number> {
    const now = this.#clock.now();
    const silentSince = new Date(now.getTime() - this.#options.staleSeconds * 1000);
    let marked = 0;
    for (;;) {
      const silent = await this.#db.withPlatform((tx) => findSilentAgents(tx, silentSince, sweepBatch));
      for (const { tenant_id: tenantId, id } of silent) {
        const done = await this.#db.withTenant(tenantId, async (tx) => {
          const row = await markStale(tx, tenantId, id, silentSince);
          if (row === undefined) return false;
          await this.#audit.record(tx, { tenantId }, {
            action: 'agent.stale',
            actor: { kind: 'system', id: null },
            target: { type: 'agent', id },
            detail: { stale: true, lastSeenAt: row.last_seen_at?.toISOString() ?? null, silentSeconds: this.#options.staleSeconds },
          });
          return true;
        });
        if (done) marked += 1;
      }
      if (silent.length < sweepBatch) break;
    }
    await this.#db.withPlatform((tx) => pruneThrottles(tx, new Date(now.getTime() - this.#options.pairingWindowSeconds * 1000)));
    return marked;
  }

  #track(work: Promise<unknown>): void {
    const tracked = work.catch((error: unknown) => this.#onBackgroundError(error, 'agent report failed'));
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  #key(): Promise<PlatformKey> {
    return this.#platformKeys.get('agents');
  }

  #toAgent(row: AgentRow, now: Date): Agent {
    const heardAt = (row.last_seen_at ?? row.paired_at).getTime();
    const silent = now.getTime() - heardAt > this.#options.staleSeconds * 1000;
    return {
      id: row.id,
      name: row.name,
      status: row.status,
      stale: row.status === 'active' && (row.stale || silent),
      lastSeenAt: row.last_seen_at?.toISOString() ?? null,
      health: row.health === null ? null : { status: row.health, message: row.health_message, changedAt: row.health_changed_at?.toISOString() ?? null },
      stats: row.stats === null || row.stats_at === null ? null : { values: row.stats, reportedAt: row.stats_at.toISOString() },
      publicKey: { type: row.public_key_type, key: row.public_key.toString('base64url') },
      bus: row.bus_kind,
      pairedAt: row.paired_at.toISOString(),
      revokedAt: row.revoked_at?.toISOString() ?? null,
      certificate:
        row.certificate_serial === null || row.certificate_not_after === null ? null : { serialNumber: row.certificate_serial, notAfter: row.certificate_not_after.toISOString() },
    };
  }
}

/** What the audit trail keeps of an issued certificate: public facts only. */
function certificateDetail(issued: { certificate: AgentCertificate; authorityCreated: boolean }): Record<string, unknown> {
  return { serialNumber: issued.certificate.serialNumber, notAfter: issued.certificate.notAfter, authorityCreated: issued.authorityCreated };
}

function codeHash(key: PlatformKey, normalizedCode: string): Buffer {
  return key.lookupHash(`pairing-code:${normalizedCode}`);
}

/** `bulwark.t.<tenantId>.agents.<agentId>.<kind>`, or undefined for any other subject. */
export function parseReportSubject(subject: string): { tenantId: string; agentId: string; kind: ReportKind } | undefined {
  const [root, t, tenantId, agents, agentId, kind, ...rest] = subject.split('.');
  if (root !== 'bulwark' || t !== 't' || agents !== 'agents' || rest.length > 0) return undefined;
  if (tenantId === undefined || agentId === undefined || !isId(tenantId) || !isId(agentId)) return undefined;
  if (!(reportKinds as readonly (string | undefined)[]).includes(kind)) return undefined;
  return { tenantId, agentId, kind: kind as ReportKind };
}

type CheckedReport = { kind: 'heartbeat' } | { kind: 'health'; health: Static<typeof healthReport> } | { kind: 'stats'; stats: Record<string, number> };

/** The payload as its kind allows it (small, strictly shaped), or undefined. */
function checkReport(kind: ReportKind, payload: unknown): CheckedReport | undefined {
  if (!withinSize(payload)) return undefined;
  switch (kind) {
    case 'heartbeat':
      return checks.heartbeat.Check(payload) ? { kind } : undefined;
    case 'health':
      return checks.health.Check(payload) ? { kind, health: payload } : undefined;
    case 'stats':
      return checks.stats.Check(payload) ? { kind, stats: payload } : undefined;
  }
}

function withinSize(payload: unknown): boolean {
  try {
    const text = JSON.stringify(payload) as string | undefined;
    return text !== undefined && Buffer.byteLength(text) <= maxReportBytes;
  } catch {
    return false;
  }
}

