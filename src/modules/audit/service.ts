import { createHash, createPublicKey, createSecretKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError } from '../../platform/errors/bulwark-error.ts';
import { type Actor, currentRequest } from '../../platform/http/request-context.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import { EnvelopeError, envelopeKeyVersion, open, seal } from '../keys/envelope.ts';
import type { PlatformKeys } from '../keys/platform-keys.ts';
import type { Reencryptor, TenantKeys } from '../keys/service.ts';
import type { AuditAction } from './actions.ts';
import { type BreakReason, bodyDigest, canonicalJson, type ChainBreak, chainLabel, checkpointPayload, type EventBody, genesisHash, linkHash } from './chain.ts';
import {
  type AuditTables,
  appendEvent,
  countEvents,
  countSubjectKeysByVersion,
  eraseSubjectKey,
  ensureHead,
  eventsAbout,
  type EventFilter,
  type EventRow,
  eventHash,
  eventsAfter,
  exportEvents,
  findHead,
  findHeadWithCheckpoints,
  findSubjectKey,
  insertCheckpoint,
  storeSubjectKey,
  lastSeqOlderThan,
  listCheckpoints,
  lockStaleSubjectKeys,
  platformAuditTables,
  pruneThrough,
  queryEvents,
  resealSubjectKey,
  scopesNeedingCheckpoint,
  scopesWithRetention,
  setRetention,
  summarize,
  tenantAuditTables,
} from './store.ts';

/** A chain: one per tenant, and the platform's own. */
export type AuditScope = { tenantId: string } | 'platform';

export interface AuditEvent {
  action: AuditAction;
  target?: { type: string; id: string } | undefined;
  /** Default `success`. */
  outcome?: 'success' | 'failure' | 'denied';
  /** Ids, counts, setting names: never secrets, never personal data (use `personal`). */
  detail?: Record<string, unknown>;
  /** Personal data beyond the request's source address and user agent, sealed with them under the subject's key. */
  personal?: { email?: string };
  /**
   * Whose personal data the event carries, when it is not the actor's: a failed login into a known account
   * (the address typed is that account's), sealed under the account's key so that erasing them erases it.
   * Their key must be prepared like an actor's.
   */
  personalOf?: Actor;
  /** Who acted, when it is not the request's authenticated principal (a login: the user who just logged in). */
  actor?: Actor;
  /** The session the event belongs to, when it is not the request's (a login: the session it started). */
  sessionId?: string;
}

/** What a service needs of the audit trail: an event in the transaction of its change. */
export interface AuditRecorder {
  record(tx: Queryable, scope: AuditScope, event: AuditEvent): Promise<void>;
  /** For events that change nothing else (reads of sensitive material, refusals): a transaction of its own. */
  recordAlone(scope: AuditScope, event: AuditEvent): Promise<void>;
}

/** An event as the API shows it. */
export interface AuditRecord {
  seq: number;
  id: string;
  occurredAt: string;
  actor: { kind: string; id: string | null };
  action: string;
  target: { type: string; id: string } | null;
  outcome: string;
  requestId: string | null;
  sessionId: string | null;
  detail: Record<string, unknown>;
  /** `present`: sealed and readable; `erased`: the subject's key was destroyed; `none`: the event holds none. */
  personalData: 'present' | 'erased' | 'none';
  source: string | null;
  userAgent: string | null;
  email: string | null;
  hash: string;
  prevHash: string;
}

/** An event in a data subject's copy: `withheld`, the personal data in it is another person's. */
export interface SubjectAuditRecord extends Omit<AuditRecord, 'personalData'> {
  personalData: AuditRecord['personalData'] | 'withheld';
}

/** An event exactly as the chain holds it (`exportStored`): what its hash covers, personal data sealed. */
export type StoredAuditEvent = Omit<EventBody, 'occurredAt' | 'pii'> & {
  seq: number;
  id: string;
  occurredAt: string;
  /** The sealed personal data, base64; null: none. */
  pii: string | null;
  prevHash: string;
  hash: string;
};

export interface VerifyReport {
  ok: boolean;
  /** Events checked, from the oldest kept one. */
  eventsChecked: number;
  checkpointsChecked: number;
  /** The first sequence number from which the chain does not hold, and why. */
  firstBreak: ChainBreak | null;
  headSeq: number;
  prunedThrough: number;
}

export interface AuditOptions {
  /** Unwrapped subject keys stay in memory this long. */
  subjectKeyCacheTtlMs: number;
  onBackgroundError?: (error: unknown, message: string) => void;
  /** Tells the other instances about erased subject keys, at once (without it: this instance only). */
  invalidations?: CacheInvalidations;
}

/** What sealing subject keys needs of a tenant's keyring; the keys module provides it. */
export interface TenantSealing {
  withKeys<T>(tenantId: string, use: (keys: TenantKeys) => T | Promise<T>): Promise<T>;
  registerReencryptor(reencryptor: Reencryptor): void;
}

interface PersonalData {
  source?: string | null;
  userAgent?: string | null;
  email?: string;
}

const walkBatch = 1000;
const subjectKeyBytes = 32;

function scopeKey(scope: AuditScope): string {
  return scope === 'platform' ? 'platform' : scope.tenantId;
}

function tablesOf(scope: AuditScope): AuditTables {
  return scope === 'platform' ? platformAuditTables : tenantAuditTables;
}

/** The audit subject of an actor: whose key seals the personal data of its events (null: the system's, none). */
export function subjectOf(actor: Actor): string | null {
  if (actor.kind === 'system') return null;
  if (actor.kind === 'anonymous' || actor.id === null) return 'anonymous';
  return `${actor.kind}:${actor.id}`;
}

// The sealed personal data is bound to its chain and subject; its place in the chain is the chain's to prove
// (the hash covers the ciphertext), since the event id is drawn by the database after it is sealed.
const piiContext = (scope: string, subject: string) => ({ tenantId: scope, table: 'audit_events', column: 'pii', rowId: subject });
const subjectKeyContext = (scope: string, subject: string) => ({ tenantId: scope, table: 'audit_subject_keys', column: 'sealed_key', rowId: subject });

/**
 * The audit trail: the one choke point every action goes through (DESIGN.md invariant 3). `record` writes an
 * event into the caller's transaction, so the event commits with the change or neither does; a failure to
 * write it fails the transaction. Each scope's events form a hash chain (chain.ts) that the database extends
 * under the head's row lock, so concurrent writers neither fork it nor leave gaps; signed checkpoints pin it
 * so that a rewrite of the whole tail is caught too.
 *
 * Personal data in an event (source address, user agent, an e-mail) is sealed under a key of its subject (the
 * acting person or key), itself sealed under the tenant's data key (or the `audit` platform key). Destroying a
 * subject's key erases that data from every event while the chain, which covers the ciphertext, still
 * verifies. A subject's key must be prepared (`prepareSubject`, outside any transaction) for its events to
 * carry personal data; the app does it before each mutating request. An event whose subject key is not ready
 * is still written, without the personal data.
 */
export class AuditService implements Reencryptor, AuditRecorder {
  readonly name = 'audit-subject-keys';
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #tenants: TenantSealing;
  readonly #platformKeys: PlatformKeys;
  /** Unwrapped subject keys with their generation (the envelope key version of the events they seal). */
  readonly #subjectKeys: TtlCache<{ key: KeyObject; generation: number }>;
  readonly #listeners = new Set<(scope: AuditScope) => void>();
  readonly #invalidations: CacheInvalidations;

  constructor(db: Database, clock: Clock, tenants: TenantSealing, platformKeys: PlatformKeys, options: AuditOptions) {
    this.#db = db;
    this.#clock = clock;
    this.#tenants = tenants;
    this.#platformKeys = platformKeys;
    this.#subjectKeys = new TtlCache(options.subjectKeyCacheTtlMs, 100_000, clock);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('audit-subject', ({ scope, subject }) => this.#subjectKeys.delete(`${scope}/${subject}`));
    tenants.registerReencryptor(this);
  }

  /**
   * Writes an event into `tx`, the transaction of the change it records (of the scope's tenant context, or
   * the platform scope), as its last statement: the database sends it with the COMMIT, and if it cannot be
   * written the transaction fails instead of committing. Call it when the change itself is done.
   */
  async record(tx: Queryable, scope: AuditScope, event: AuditEvent): Promise<void> {
    const request = currentRequest();
    const actor = event.actor ?? request?.actor ?? { kind: 'system', id: null };
    const scopeId = scopeKey(scope);
    const subject = subjectOf(event.personalOf ?? actor);
    const subjectKey = subject === null ? undefined : this.#subjectKeys.get(`${scopeId}/${subject}`);
    const personal: PersonalData = { ...(request === undefined ? {} : { source: request.source, userAgent: request.userAgent }), ...event.personal };
    const hasPersonal = Object.values(personal).some((value) => value !== null && value !== undefined);
    const detail = {
      ...event.detail,
      ...(request?.grantId !== null && request?.grantId !== undefined && actor.kind === 'operator' ? { supportGrantId: request.grantId } : {}),
      ...(subject !== null && subjectKey === undefined && hasPersonal ? { personalDataOmitted: true } : {}),
    };
    const pii =
      subject !== null && subjectKey !== undefined && hasPersonal
        ? seal(subjectKey.key, subjectKey.generation, Buffer.from(JSON.stringify(personal), 'utf8'), piiContext(scopeId, subject))
        : null;
    const body = {
      scope: scopeId,
      occurredAt: this.#clock.now(),
      actorKind: actor.kind,
      actorId: actor.id,
      action: event.action,
      targetType: event.target?.type ?? null,
      targetId: event.target?.id ?? null,
      outcome: event.outcome ?? 'success',
      requestId: request?.requestId ?? null,
      sessionId: event.sessionId ?? (event.actor === undefined ? (request?.sessionId ?? null) : null),
      detail,
      subject: pii === null ? null : subject,
      pii,
    };
    await appendEvent(tx, tablesOf(scope), scopeId, { ...body, detail: canonicalJson(detail), bodyDigest: bodyDigest(body) }, { chain: chainLabel, genesis: genesisHash(scopeId) });
    for (const listener of this.#listeners) queueMicrotask(() => listener(scope));
  }

  /** `record` in a transaction of its own: for events that change nothing else (reads, refusals). */
  async recordAlone(scope: AuditScope, event: AuditEvent): Promise<void> {
    await this.#transaction(scope, (tx) => this.record(tx, scope, event));
  }

  /** Told (in a microtask, possibly before the commit) whenever an event was written; sinks wake up on it. */
  onRecorded(listener: (scope: AuditScope) => void): void {
    this.#listeners.add(listener);
  }

  /**
   * Makes the subject's key ready for `record`: from the cache, or unsealed from the database, or created.
   * Call it outside any transaction (it reads and may write through its own).
   */
  async prepareSubject(scope: AuditScope, actor: Actor): Promise<void> {
    const subject = subjectOf(actor);
    if (subject === null) return;
    const scopeId = scopeKey(scope);
    const cacheKey = `${scopeId}/${subject}`;
    if (this.#subjectKeys.get(cacheKey) !== undefined) return;
    const since = this.#subjectKeys.mark();
    const tables = tablesOf(scope);
    let stored = await this.#transaction(scope, (tx) => findSubjectKey(tx, tables, scopeId, subject));
    if (stored?.sealed_key == null) {
      // None yet, or erased: a fresh key of the next generation.
      const generation = (stored?.generation ?? 0) + 1;
      const fresh = randomBytes(subjectKeyBytes);
      try {
        const sealed = await this.#sealSubjectKey(scope, subject, fresh);
        stored = await this.#transaction(scope, async (tx) => {
          await storeSubjectKey(tx, tables, scopeId, subject, { ...sealed, generation }, this.#clock.now());
          return findSubjectKey(tx, tables, scopeId, subject);
        });
      } finally {
        fresh.fill(0);
      }
    }
    if (stored?.sealed_key == null) throw new BulwarkError('internal_error', { detail: 'audit subject key was not stored' });
    const key = await this.#openSubjectKey(scope, subject, stored.sealed_key);
    try {
      this.#subjectKeys.set(cacheKey, { key: createSecretKey(key), generation: stored.generation }, since);
    } finally {
      key.fill(0);
    }
  }

  /** Erases a subject's personal data from every event of the scope by destroying its key; the chain is untouched. */
  async forgetSubject(scope: AuditScope, subject: string): Promise<boolean> {
    const deleted = await this.#transaction(scope, async (tx) => {
      const removed = await this.forgetSubjectIn(tx, scope, subject);
      if (removed) await this.record(tx, scope, { action: 'audit.subject.forget', target: { type: 'audit-subject', id: subject } });
      return removed;
    });
    this.dropSubjectKey(scope, subject);
    return deleted;
  }

  /**
   * `forgetSubject` inside the caller's transaction, whose own event records the erasure (a data subject's
   * erasure). Call `dropSubjectKey` once that transaction committed: until then every instance may still
   * hold the key.
   */
  async forgetSubjectIn(tx: Queryable, scope: AuditScope, subject: string): Promise<boolean> {
    return eraseSubjectKey(tx, tablesOf(scope), scopeKey(scope), subject, this.#clock.now());
  }

  /** Drops a subject's unsealed key from this and every other instance's memory (after its erasure committed). */
  dropSubjectKey(scope: AuditScope, subject: string): void {
    this.#invalidations.invalidate({ kind: 'audit-subject', scope: scopeKey(scope), subject });
  }

  // --- reading ---

  async query(scope: AuditScope, filter: EventFilter, limit: number, beforeSeq: number | undefined): Promise<{ items: AuditRecord[]; nextCursor: string | null }> {
    const scopeId = scopeKey(scope);
    const rows = await this.#transaction(scope, (tx) => queryEvents(tx, tablesOf(scope), scopeId, filter, beforeSeq ?? Number.MAX_SAFE_INTEGER, limit + 1));
    const page = rows.slice(0, limit);
    const items = await this.#present(scope, page);
    const last = page.at(-1);
    return { items, nextCursor: rows.length > limit && last !== undefined ? encodeSeqCursor(last.seq) : null };
  }

  /** Events after `afterSeq` in sequence order, as the API shows them: what the sinks deliver. */
  async eventsAfter(scope: AuditScope, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.#transaction(scope, (tx) => eventsAfter(tx, tablesOf(scope), scopeKey(scope), afterSeq, limit));
    return this.#present(scope, rows);
  }

  /**
   * The chain as stored, for the operator archive of a tenant being offboarded: each kept event with all its
   * hash covers (chain.ts `bodyDigest`, `linkHash`), so the archive verifies on its own; the personal data
   * stays sealed (base64) under the subject keys that the offboarding then destroys.
   */
  async *exportStored(scope: AuditScope, batchSize = 500): AsyncGenerator<StoredAuditEvent[]> {
    const scopeId = scopeKey(scope);
    let after = 0;
    for (;;) {
      const rows = await this.#transaction(scope, (tx) => eventsAfter(tx, tablesOf(scope), scopeId, after, batchSize));
      if (rows.length === 0) return;
      yield rows.map((row) => ({
        ...bodyOf(scopeId, row),
        seq: row.seq,
        id: row.id,
        occurredAt: row.occurred_at.toISOString(),
        pii: row.pii?.toString('base64') ?? null,
        prevHash: row.prev_hash.toString('hex'),
        hash: row.hash.toString('hex'),
      }));
      after = rows[rows.length - 1]?.seq ?? after;
      if (rows.length < batchSize) return;
    }
  }

  /** Batches of events in sequence order, for a streamed export; each batch is read in its own short transaction. */
  async *export(scope: AuditScope, filter: EventFilter, batchSize = 500): AsyncGenerator<AuditRecord[]> {
    const scopeId = scopeKey(scope);
    let after = 0;
    for (;;) {
      const rows = await this.#transaction(scope, (tx) => exportEvents(tx, tablesOf(scope), scopeId, filter, after, batchSize));
      if (rows.length === 0) return;
      yield await this.#present(scope, rows);
      after = rows[rows.length - 1]?.seq ?? after;
      if (rows.length < batchSize) return;
    }
  }

  /**
   * The events about one person (what they did, what was done to them, failed logins naming them), oldest
   * first, in batches: the data subject's copy. Personal data is opened only where it is theirs (sealed under
   * their key); another person's, such as the address of the admin who changed their account, is withheld
   * (GDPR Art. 15(4)).
   */
  async *eventsAbout(scope: AuditScope, person: Actor & { id: string }, batchSize = 500): AsyncGenerator<SubjectAuditRecord[]> {
    const scopeId = scopeKey(scope);
    const subject = `${person.kind}:${person.id}`;
    let after = 0;
    for (;;) {
      const rows = await this.#transaction(scope, (tx) => eventsAbout(tx, tablesOf(scope), scopeId, { kind: person.kind, id: person.id, subject }, after, batchSize));
      if (rows.length === 0) return;
      const theirs = (row: EventRow) => row.subject === null || row.subject === subject;
      const records = await this.#present(scope, rows.map((row) => (theirs(row) ? row : { ...row, subject: null, pii: null })));
      yield records.map((record, index) => (rows[index] !== undefined && theirs(rows[index]) ? record : { ...record, personalData: 'withheld' as const }));
      after = rows[rows.length - 1]?.seq ?? after;
      if (rows.length < batchSize) return;
    }
  }

  async summary(scope: AuditScope, filter: EventFilter) {
    const { rows, total } = await this.#transaction(scope, async (tx) => ({
      rows: await summarize(tx, tablesOf(scope), scopeKey(scope), filter),
      // Counted on its own: the groups are capped, the total is not.
      total: await countEvents(tx, tablesOf(scope), scopeKey(scope), filter),
    }));
    const countBy = (key: (row: (typeof rows)[number]) => string) => {
      const counts = new Map<string, number>();
      for (const row of rows) counts.set(key(row), (counts.get(key(row)) ?? 0) + row.count);
      return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([name, count]) => ({ name, count }));
    };
    return {
      total,
      byAction: countBy((row) => row.action),
      byActor: countBy((row) => `${row.actor_kind}:${row.actor_id ?? '-'}`),
      byOutcome: countBy((row) => row.outcome),
    };
  }

  // --- tamper evidence ---

  /** The public key that verifies checkpoint signatures, and its id. */
  async checkpointKey(): Promise<{ keyId: string; publicKey: KeyObject }> {
    const publicKey = createPublicKey((await this.#platformKeys.get('audit')).signingKey);
    return { keyId: keyIdOf(publicKey), publicKey };
  }

  /** The chain's signed checkpoints, oldest first: what an outsider verifies with the checkpoint key. */
  async checkpoints(scope: AuditScope): Promise<{ seq: number; hash: string; kind: string; keyId: string; signature: string; signedAt: string }[]> {
    const rows = await this.#transaction(scope, (tx) => listCheckpoints(tx, tablesOf(scope), scopeKey(scope)));
    return rows.map((row) => ({
      seq: row.seq,
      hash: row.hash.toString('hex'),
      kind: row.kind,
      keyId: row.key_id,
      signature: row.signature.toString('base64'),
      signedAt: row.signed_at.toISOString(),
    }));
  }

  /** Signs the chain's head as a checkpoint (nothing to do when it has no events or is signed already). */
  async checkpoint(scope: AuditScope): Promise<{ seq: number } | null> {
    const scopeId = scopeKey(scope);
    const tables = tablesOf(scope);
    const signer = await this.#signer();
    return this.#transaction(scope, async (tx) => {
      const head = await findHead(tx, tables, scopeId);
      if (head === undefined || head.seq === 0) return null;
      await insertCheckpoint(tx, tables, scopeId, signer(scopeId, head.seq, head.hash, 'periodic'));
      return { seq: head.seq };
    });
  }

  /** Signs every chain (every tenant's and the platform's) whose head moved since its last checkpoint. */
  async checkpointAll(): Promise<number> {
    let signed = 0;
    const scopes: AuditScope[] = [
      ...(await this.#db.withPlatform((tx) => scopesNeedingCheckpoint(tx, tenantAuditTables, 10_000))).map((row) => ({ tenantId: row.scope })),
      ...((await this.#db.withPlatform((tx) => scopesNeedingCheckpoint(tx, platformAuditTables, 1))).length > 0 ? ['platform' as const] : []),
    ];
    for (const scope of scopes) if ((await this.checkpoint(scope)) !== null) signed += 1;
    return signed;
  }

  /**
   * Walks the chain from its oldest kept event to the head: every sequence number present, every link and
   * hash right, every checkpoint signed by the audit key and matching its event, the head matching the last
   * event. Reports the first sequence number from which it does not hold.
   */
  async verify(scope: AuditScope): Promise<VerifyReport> {
    const scopeId = scopeKey(scope);
    const tables = tablesOf(scope);
    const { publicKey, keyId } = await this.checkpointKey();
    // The head and the checkpoints as of one moment; events written after it are the next verification's.
    const { head, checkpoints } = await this.#transaction(scope, (tx) => findHeadWithCheckpoints(tx, tables, scopeId));
    const report = (firstBreak: ChainBreak | null, eventsChecked: number): VerifyReport => ({
      ok: firstBreak === null,
      eventsChecked,
      checkpointsChecked: checkpoints.length,
      firstBreak,
      headSeq: head?.seq ?? 0,
      prunedThrough: head?.pruned_through ?? 0,
    });
    if (head === undefined) return report(checkpoints.length > 0 ? { seq: 1, reason: 'head_mismatch' } : null, 0);

    const breaks: ChainBreak[] = [];
    const broken = (seq: number, reason: BreakReason) => breaks.push({ seq, reason });
    const checkpointAt = new Map<number, (typeof checkpoints)[number]>();
    for (const checkpoint of checkpoints) {
      const valid =
        checkpoint.key_id === keyId && verify(null, checkpointPayload(scopeId, checkpoint.seq, checkpoint.hash, checkpoint.kind, checkpoint.signed_at), publicKey, checkpoint.signature);
      if (!valid) broken(checkpoint.seq, 'bad_checkpoint');
      else checkpointAt.set(checkpoint.seq, checkpoint);
    }

    let expectedSeq = 1;
    let prev = genesisHash(scopeId);
    if (head.pruned_through > 0) {
      const boundary = checkpointAt.get(head.pruned_through);
      if (boundary?.kind !== 'retention') broken(head.pruned_through, 'missing_boundary');
      else prev = boundary.hash;
      expectedSeq = head.pruned_through + 1;
    }
    let checked = 0;
    let after = expectedSeq - 1;
    let walkBroke = false;
    walk: for (;;) {
      const rows = await this.#transaction(scope, (tx) => eventsAfter(tx, tables, scopeId, after, walkBatch, head.seq));
      for (const row of rows) {
        const reason: BreakReason | undefined =
          row.seq !== expectedSeq
            ? 'missing_event'
            : !row.prev_hash.equals(prev)
              ? 'broken_link'
              : !linkHash(row.seq, row.prev_hash, row.id, bodyDigest(bodyOf(scopeId, row))).equals(row.hash)
                ? 'hash_mismatch'
                : undefined;
        if (reason !== undefined) {
          broken(expectedSeq, reason);
          walkBroke = true;
          break walk;
        }
        const checkpoint = checkpointAt.get(row.seq);
        if (checkpoint !== undefined && !checkpoint.hash.equals(row.hash)) broken(row.seq, 'bad_checkpoint');
        checked += 1;
        prev = row.hash;
        expectedSeq += 1;
      }
      if (rows.length < walkBatch) break;
      after = rows[rows.length - 1]?.seq ?? after;
    }
    if (!walkBroke) {
      // The events end here: the head and every checkpoint must agree (a cut tail leaves them pointing past it).
      const lastSeq = expectedSeq - 1;
      if (head.seq > lastSeq || checkpoints.some((checkpoint) => checkpoint.seq > lastSeq)) broken(expectedSeq, 'missing_event');
      else if (head.seq !== lastSeq || !head.hash.equals(prev)) broken(expectedSeq, 'head_mismatch');
    }
    breaks.sort((a, b) => a.seq - b.seq);
    return report(breaks[0] ?? null, checked);
  }

  // --- retention ---

  async setRetention(scope: AuditScope, days: number | null): Promise<void> {
    const scopeId = scopeKey(scope);
    await this.#transaction(scope, async (tx) => {
      await ensureHead(tx, tablesOf(scope), scopeId, genesisHash(scopeId));
      await setRetention(tx, tablesOf(scope), scopeId, days);
      await this.record(tx, scope, { action: 'audit.settings.update', detail: { retentionDays: days } });
    });
  }

  async retention(scope: AuditScope): Promise<{ retentionDays: number | null; prunedThrough: number; headSeq: number }> {
    const head = await this.#transaction(scope, (tx) => findHead(tx, tablesOf(scope), scopeKey(scope)));
    return { retentionDays: head?.retention_days ?? null, prunedThrough: head?.pruned_through ?? 0, headSeq: head?.seq ?? 0 };
  }

  /**
   * Prunes the events older than the scope's retention: signs a retention checkpoint at the newest of them
   * (the boundary the chain is verified from afterwards), moves the head's boundary, deletes them, and records
   * that it did, all in one transaction.
   */
  async prune(scope: AuditScope): Promise<{ prunedThrough: number; deleted: number }> {
    const scopeId = scopeKey(scope);
    const tables = tablesOf(scope);
    const signer = await this.#signer();
    return this.#transaction(scope, async (tx) => {
      const head = await findHead(tx, tables, scopeId);
      if (head?.retention_days == null) return { prunedThrough: head?.pruned_through ?? 0, deleted: 0 };
      const boundary = await lastSeqOlderThan(tx, tables, scopeId, head.retention_days);
      if (boundary <= head.pruned_through) return { prunedThrough: head.pruned_through, deleted: 0 };
      const hash = await eventHash(tx, tables, scopeId, boundary);
      if (hash === undefined) throw new BulwarkError('data_integrity_failed', { detail: `audit ${scopeId}: boundary event ${boundary} is missing` });
      await insertCheckpoint(tx, tables, scopeId, signer(scopeId, boundary, hash, 'retention'));
      const deleted = await pruneThrough(tx, tables, scopeId, boundary);
      await this.record(tx, scope, { action: 'audit.prune', detail: { prunedThrough: boundary, deleted, retentionDays: head.retention_days } });
      return { prunedThrough: boundary, deleted };
    });
  }

  /** Prunes every chain with a retention period. */
  async pruneAll(): Promise<number> {
    let deleted = 0;
    for (const { scope } of await this.#db.withPlatform((tx) => scopesWithRetention(tx, tenantAuditTables))) deleted += (await this.prune({ tenantId: scope })).deleted;
    if ((await this.#db.withPlatform((tx) => scopesWithRetention(tx, platformAuditTables))).length > 0) deleted += (await this.prune('platform')).deleted;
    return deleted;
  }

  // --- re-encryption of subject keys (Reencryptor) ---

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countSubjectKeysByVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleSubjectKeys(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const context = subjectKeyContext(tenantId, row.subject);
        const key = keys.open(row.sealed_key, context, 'data_integrity_failed');
        try {
          const { ciphertext, keyVersion } = keys.seal(key, context);
          await resealSubjectKey(tx, tenantId, row.subject, { key: ciphertext, keyVersion });
        } finally {
          key.fill(0);
        }
      }
      return rows.length;
    });
  }

  // --- internals ---

  #transaction<T>(scope: AuditScope, work: (tx: Queryable) => Promise<T>): Promise<T> {
    return scope === 'platform' ? this.#db.withPlatform(work) : this.#db.withTenant(scope.tenantId, work);
  }

  async #signer(): Promise<(scope: string, seq: number, hash: Buffer, kind: 'periodic' | 'retention') => { seq: number; hash: Buffer; kind: 'periodic' | 'retention'; key_id: string; signature: Buffer; signed_at: Date }> {
    const key = (await this.#platformKeys.get('audit')).signingKey;
    const keyId = keyIdOf(createPublicKey(key));
    return (scope, seq, hash, kind) => {
      const signedAt = this.#clock.now();
      return { seq, hash, kind, key_id: keyId, signature: sign(null, checkpointPayload(scope, seq, hash, kind, signedAt), key), signed_at: signedAt };
    };
  }

  async #sealSubjectKey(scope: AuditScope, subject: string, key: Buffer): Promise<{ key: Buffer; keyVersion: number }> {
    const scopeId = scopeKey(scope);
    if (scope === 'platform') return { key: (await this.#platformKeys.get('audit')).seal(key, subjectKeyContext(scopeId, subject)), keyVersion: 1 };
    return this.#tenants.withKeys(scope.tenantId, (keys) => {
      const { ciphertext, keyVersion } = keys.seal(key, subjectKeyContext(scopeId, subject));
      return { key: ciphertext, keyVersion };
    });
  }

  async #openSubjectKey(scope: AuditScope, subject: string, sealed: Buffer): Promise<Buffer> {
    const scopeId = scopeKey(scope);
    if (scope === 'platform') return (await this.#platformKeys.get('audit')).open(sealed, subjectKeyContext(scopeId, subject));
    return this.#tenants.withKeys(scope.tenantId, (keys) => keys.open(sealed, subjectKeyContext(scopeId, subject), 'data_integrity_failed'));
  }

  /** Rows as the API shows them, personal data opened where the subject's key still exists. */
  async #present(scope: AuditScope, rows: EventRow[]): Promise<AuditRecord[]> {
    const scopeId = scopeKey(scope);
    const keys = new Map<string, { key: KeyObject; generation: number } | null>();
    for (const subject of new Set(rows.flatMap((row) => (row.subject === null ? [] : [row.subject])))) {
      const cached = this.#subjectKeys.get(`${scopeId}/${subject}`);
      if (cached !== undefined) {
        keys.set(subject, cached);
        continue;
      }
      const since = this.#subjectKeys.mark();
      const stored = await this.#transaction(scope, (tx) => findSubjectKey(tx, tablesOf(scope), scopeId, subject));
      if (stored?.sealed_key == null) {
        keys.set(subject, null);
        continue;
      }
      const raw = await this.#openSubjectKey(scope, subject, stored.sealed_key);
      try {
        const entry = { key: createSecretKey(raw), generation: stored.generation };
        this.#subjectKeys.set(`${scopeId}/${subject}`, entry, since);
        keys.set(subject, entry);
      } finally {
        raw.fill(0);
      }
    }
    return rows.map((row) => {
      let personal: PersonalData = {};
      let personalData: AuditRecord['personalData'] = 'none';
      if (row.subject !== null && row.pii !== null) {
        const current = keys.get(row.subject) ?? null;
        // Sealed under an earlier generation of the subject's key: that key was destroyed.
        if (current === null || envelopeKeyVersion(row.pii) !== current.generation) personalData = 'erased';
        else {
          personal = openPersonal(row.pii, scopeId, row.subject, row.id, current.key);
          personalData = 'present';
        }
      }
      return {
        seq: row.seq,
        id: row.id,
        occurredAt: row.occurred_at.toISOString(),
        actor: { kind: row.actor_kind, id: row.actor_id },
        action: row.action,
        target: row.target_type === null || row.target_id === null ? null : { type: row.target_type, id: row.target_id },
        outcome: row.outcome,
        requestId: row.request_id,
        sessionId: row.session_id,
        detail: (row.detail ?? {}) as Record<string, unknown>,
        personalData,
        source: personal.source ?? null,
        userAgent: personal.userAgent ?? null,
        email: personal.email ?? null,
        hash: row.hash.toString('hex'),
        prevHash: row.prev_hash.toString('hex'),
      };
    });
  }
}

function openPersonal(pii: Buffer, scope: string, subject: string, eventId: string, key: KeyObject): PersonalData {
  try {
    return JSON.parse(open(pii, piiContext(scope, subject), () => key).toString('utf8')) as PersonalData;
  } catch (error) {
    if (error instanceof EnvelopeError) throw new BulwarkError('data_integrity_failed', { cause: error, detail: `audit event ${eventId}: personal data ${error.reason}` });
    throw error;
  }
}

/** The stored row as the body digest saw it when the event was written. */
function bodyOf(scope: string, row: EventRow) {
  return {
    scope,
    occurredAt: row.occurred_at,
    actorKind: row.actor_kind,
    actorId: row.actor_id,
    action: row.action,
    targetType: row.target_type,
    targetId: row.target_id,
    outcome: row.outcome,
    requestId: row.request_id,
    sessionId: row.session_id,
    detail: row.detail,
    subject: row.subject,
    pii: row.pii,
  };
}

function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest('hex').slice(0, 16);
}

export function encodeSeqCursor(seq: number): string {
  return Buffer.from(`s1:${seq}`).toString('base64url');
}

export function decodeSeqCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  const match = /^s1:([1-9][0-9]{0,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const seq = match?.[1] === undefined ? Number.NaN : Number(match[1]);
  if (!Number.isSafeInteger(seq)) throw new BulwarkError('invalid_cursor');
  return seq;
}
