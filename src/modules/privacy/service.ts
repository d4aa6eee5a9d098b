import { Compile } from 'typebox/compile';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { retryWithNewId, withFreshId } from '../../platform/ids.ts';
import type { AccessService } from '../access/service.ts';
import { type AuditRecorder, type AuditService, type SubjectAuditRecord, subjectOf } from '../audit/service.ts';
import type { MfaService } from '../identity/mfa/service.ts';
import type { UsersService } from '../identity/service.ts';
import type { SsoService } from '../identity/sso/service.ts';
import type { LoginSessionService } from '../sessions/login-sessions.ts';
import {
  type ActiveHold,
  type CreateHoldBody,
  type Deferred,
  type EraseBody,
  type Erased,
  type ErasureRequest,
  type Inventory,
  type LegalHold,
  type PiiAnnotation,
  piiAnnotation,
  type ReleasedHold,
  type RemovedCounts,
  type SubjectExportHead,
} from './schemas.ts';
import {
  activeHolds,
  completeErasure,
  erasuresOfUser,
  type ErasureRow,
  findHold,
  findPendingErasure,
  type HoldRow,
  holdsOfUser,
  insertErasure,
  insertHold,
  listErasures,
  listHolds,
  pendingErasureUsers,
  piiAnnotations,
  releaseHold,
  setErasureHolds,
} from './store.ts';

/** What privacy needs of the other modules: reads for the copy, and in-transaction steps for the erasure. */
export interface PrivacyServices {
  users: Pick<UsersService, 'get' | 'lockIn' | 'disableIn' | 'eraseIn'>;
  access: Pick<AccessService, 'userRoles' | 'isLastAdmin'>;
  sessions: Pick<LoginSessionService, 'listOf' | 'revokeAllIn' | 'forgetLive'>;
  mfa: Pick<MfaService, 'overview'>;
  sso: Pick<SsoService, 'identitiesOf'>;
}

type PrivacyAudit = AuditRecorder & Pick<AuditService, 'forgetSubjectIn' | 'dropSubjectKey' | 'eventsAbout'>;

/** Who asked: `user:<id>`, `api-key:<id>` or `operator:<id>`, as support grants name their granter. */
export type Requester = string;

/** The copy: everything but the events, then the events in batches (streamed: a user may have many). */
export interface SubjectExport {
  head: SubjectExportHead;
  events: AsyncIterable<SubjectAuditRecord[]>;
}

/** How an erasure transaction ended, with what must happen after its commit. */
type ErasureStep =
  | { kind: 'erased'; answer: Erased; sessionIds: string[] }
  | { kind: 'deferred'; answer: Deferred; sessionIds: string[] }
  | { kind: 'held' };

const annotationPrefix = 'pii:';
const checkAnnotation = Compile(piiAnnotation);
const noRows: Omit<RemovedCounts, 'auditSubjectKeys'> = {
  users: 0,
  passwordHistory: 0,
  sessions: 0,
  refreshTokens: 0,
  mfaFactors: 0,
  recoveryCodes: 0,
  mfaChallenges: 0,
  ssoIdentities: 0,
  roleAssignments: 0,
  loginThrottles: 0,
};

/** A column's `pii:` comment as an annotation, or undefined when it is not one (malformed JSON, wrong shape). */
export function parseAnnotation(comment: string): PiiAnnotation | undefined {
  if (!comment.startsWith(annotationPrefix)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(comment.slice(annotationPrefix.length));
  } catch {
    return undefined;
  }
  return checkAnnotation.Check(value) ? value : undefined;
}

function userSubject(userId: string): string {
  // Never null for a user: only the system actor has no subject.
  return subjectOf({ kind: 'user', id: userId }) ?? `user:${userId}`;
}

/** The holds named in a refusal: a few, each with its id (names are the tenant's own short plain text). */
function holdsNamed(holds: readonly HoldRow[]): string {
  const shown = holds.slice(0, 5).map((hold) => `"${hold.name}" (${hold.id})`);
  return holds.length > shown.length ? `${shown.join(', ')} and ${holds.length - shown.length} more` : shown.join(', ');
}

/**
 * Personal data under the GDPR: the inventory of where it lives (generated from the schema's `pii:`
 * annotations, so it cannot drift), a data subject's copy, erasure, and legal holds that defer erasure
 * (and block user deletion and tenant offboarding) while they are in force. Erasure deletes the user with
 * everything hanging off it and destroys their audit subject key, in one transaction with its event: the
 * audit trail keeps the user's random id (the pseudonym) and still verifies, while their personal data in
 * it no longer opens. Held, the user is disabled and the request waits; releasing the last hold over it runs
 * it. See docs/privacy.md.
 */
export class PrivacyService {
  readonly #db: Database;
  readonly #audit: PrivacyAudit;
  readonly #users: PrivacyServices['users'];
  readonly #access: PrivacyServices['access'];
  readonly #sessions: PrivacyServices['sessions'];
  readonly #mfa: PrivacyServices['mfa'];
  readonly #sso: PrivacyServices['sso'];
  readonly #clock: Clock;

  constructor(db: Database, audit: PrivacyAudit, services: PrivacyServices, clock: Clock) {
    this.#db = db;
    this.#audit = audit;
    this.#users = services.users;
    this.#access = services.access;
    this.#sessions = services.sessions;
    this.#mfa = services.mfa;
    this.#sso = services.sso;
    this.#clock = clock;
  }

  // --- legal holds ---

  async createHold(tenantId: string, input: CreateHoldBody, createdBy: Requester): Promise<LegalHold> {
    return this.#db.withTenant(tenantId, async (tx) => {
      // The user's row is shared-locked: an erasure under way finishes first (then the user is gone: 404),
      // or waits for this hold and is deferred by it.
      if (input.userId !== undefined && (await this.#users.lockIn(tx, tenantId, input.userId, 'share')) === undefined) throw notFound();
      const row = await withFreshId(
        async (id) =>
          (await insertHold(tx, { tenantId, id, name: input.name, reason: input.reason, userId: input.userId ?? null, createdBy, now: this.#clock.now() })) ?? retryWithNewId,
      );
      // Names and reasons are the tenant's free text: the event carries ids only.
      await this.#audit.record(tx, { tenantId }, { action: 'legal-hold.create', target: { type: 'legal-hold', id: row.id }, detail: { userId: row.user_id } });
      return toHold(row);
    });
  }

  async listHolds(tenantId: string, limit: number, cursor: string | undefined): Promise<{ items: LegalHold[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withTenant(tenantId, (tx) => listHolds(tx, tenantId, after, limit + 1));
    return toPage(rows, limit, toHold);
  }

  async getHold(tenantId: string, holdId: string): Promise<LegalHold> {
    const row = await this.#db.withTenant(tenantId, (tx) => findHold(tx, tenantId, holdId));
    if (row === undefined) throw notFound();
    return toHold(row);
  }

  /**
   * Releases a hold (it stays listed, with who released it and when), then runs the pending erasures no
   * hold covers any more, each in a transaction of its own. Releasing a released hold is a conflict: the
   * release already happened, and answering it as new would misdate it.
   */
  async releaseHold(tenantId: string, holdId: string, releasedBy: Requester): Promise<ReleasedHold> {
    const released = await this.#db.withTenant(tenantId, async (tx) => {
      const row = await findHold(tx, tenantId, holdId, { forUpdate: true });
      if (row === undefined) throw notFound();
      if (row.released_at !== null) throw new BulwarkError('conflict', { message: `The legal hold was released already (${row.released_at.toISOString()}).` });
      const updated = await releaseHold(tx, tenantId, holdId, releasedBy, this.#clock.now());
      if (updated === undefined) throw new BulwarkError('conflict', { message: 'The legal hold was released concurrently.' });
      await this.#audit.record(tx, { tenantId }, { action: 'legal-hold.release', target: { type: 'legal-hold', id: holdId }, detail: { userId: updated.user_id } });
      return updated;
    });
    const erasuresCompleted: string[] = [];
    const candidates = await this.#db.withTenant(tenantId, (tx) => pendingErasureUsers(tx, tenantId));
    for (const userId of candidates) {
      const step = await this.#db.withTenant(tenantId, (tx) => this.#eraseIn(tx, tenantId, userId, { kind: 'release', holdId }));
      this.#afterCommit(tenantId, userId, step);
      if (step.kind === 'erased') erasuresCompleted.push(step.answer.requestId);
    }
    return { ...toHold(released), erasuresCompleted };
  }

  /** Holds in force for the tenant: tenant-wide ones and those on any of its users. */
  async activeHolds(tenantId: string): Promise<{ id: string; name: string; userId: string | null }[]> {
    const rows = await this.#db.withTenant(tenantId, (tx) => activeHolds(tx, tenantId));
    return rows.map(toActiveHold);
  }

  /** In the transaction that would destroy a user's data (their deletion): refuses while a hold covers them. */
  async assertNotHeld(tx: Queryable, tenantId: string, userId: string): Promise<void> {
    const holds = await activeHolds(tx, tenantId, userId);
    if (holds.length > 0) {
      throw new BulwarkError('legal_hold_active', { message: `Legal holds are in force over this user: ${holdsNamed(holds)}. Release them first, or ask for an erasure (it waits for them).` });
    }
  }

  // --- the inventory ---

  /** Every annotated column, read from the catalog now: what the running schema says, not a copy of it. */
  async inventory(): Promise<Inventory> {
    const rows = await this.#db.withPlatform((tx) => piiAnnotations(tx));
    const columns = rows.map((row) => {
      const annotation = parseAnnotation(row.comment);
      // The inventory test keeps every annotation well-formed; a broken one is a defect, not bad input.
      if (annotation === undefined) throw new BulwarkError('internal_error', { detail: `malformed pii annotation on ${row.table}.${row.column}` });
      return { table: row.table, column: row.column, type: row.type, scope: row.tenant_scoped ? ('tenant' as const) : ('platform' as const), ...annotation };
    });
    return { generatedAt: this.#clock.now().toISOString(), source: 'pii: comments on the columns of the running database (docs/privacy.md)', columns };
  }

  // --- the data subject's copy ---

  /**
   * Everything Bulwark holds about a user, decrypted: profile, roles, sessions, second factors (never their
   * secrets), SSO links (never the subject), legal holds and erasure requests naming them, and the audit
   * events about them. Audited before anything is handed out; the events follow as a stream.
   */
  async exportUser(tenantId: string, userId: string): Promise<SubjectExport> {
    const user = await this.#users.get(tenantId, userId);
    const { roles } = await this.#access.userRoles(tenantId, userId);
    const sessions = await this.#sessions.listOf(tenantId, userId);
    const { factors, recoveryCodesLeft } = await this.#mfa.overview(tenantId, userId);
    const ssoIdentities = await this.#sso.identitiesOf(tenantId, userId);
    const { holds, requests } = await this.#db.withTenant(tenantId, async (tx) => ({
      holds: await holdsOfUser(tx, tenantId, userId),
      requests: await erasuresOfUser(tx, tenantId, userId),
    }));
    await this.#audit.recordAlone({ tenantId }, { action: 'privacy.export', target: { type: 'user', id: userId } });
    return {
      head: {
        format: 'bulwark-data-subject-export/v1',
        exportedAt: this.#clock.now().toISOString(),
        tenantId,
        user,
        roles,
        sessions,
        mfa: { factors, recoveryCodesLeft },
        ssoIdentities,
        legalHolds: holds.map(toHold),
        erasureRequests: requests.map(toErasure),
      },
      events: this.#audit.eventsAbout({ tenantId }, { kind: 'user', id: userId }),
    };
  }

  // --- erasure ---

  /**
   * Erases a user, or defers it while a legal hold covers them: the steps (lock, check, act, audit) run in
   * one transaction, so the erasure and its event commit together or not at all. The tenant's last active
   * tenant-admin is refused (409): disabling or removing them would leave the tenant without anyone who can
   * administer it, which no operator can repair.
   */
  async erase(tenantId: string, userId: string, input: EraseBody, requestedBy: Requester): Promise<Erased | Deferred> {
    const step = await this.#db.withTenant(tenantId, (tx) => this.#eraseIn(tx, tenantId, userId, { kind: 'request', reason: input.reason ?? null, requestedBy }));
    this.#afterCommit(tenantId, userId, step);
    if (step.kind === 'held') throw new BulwarkError('internal_error', { detail: 'an erasure request came back held' });
    return step.answer;
  }

  async listErasureRequests(tenantId: string, limit: number, cursor: string | undefined): Promise<{ items: ErasureRequest[]; nextCursor: string | null }> {
    const after = decodeCursor(cursor);
    const rows = await this.#db.withTenant(tenantId, (tx) => listErasures(tx, tenantId, after, limit + 1));
    return toPage(rows, limit, toErasure);
  }

  /**
   * One erasure in `tx`. A request (`request`) erases, or defers under a hold; a hold's release (`release`)
   * erases a pending request that no hold covers any more and otherwise leaves it (`held`).
   */
  async #eraseIn(
    tx: Queryable,
    tenantId: string,
    userId: string,
    mode: { kind: 'request'; reason: string | null; requestedBy: Requester } | { kind: 'release'; holdId: string },
  ): Promise<ErasureStep> {
    // 1. Load and lock: the user's row (a hold placed on them meanwhile waits), and their pending request.
    const status = await this.#users.lockIn(tx, tenantId, userId, 'update');
    const pending = await findPendingErasure(tx, tenantId, userId);
    // A release runs only what was asked for and waits; a request may find its earlier self waiting.
    const origin: { pending: ErasureRow } | { requested: { reason: string | null; requestedBy: Requester } } | undefined =
      pending !== undefined ? { pending } : mode.kind === 'request' ? { requested: mode } : undefined;
    if (origin === undefined) return { kind: 'held' };
    // A user deleted while their request waited: what is left is their audit key and the request.
    if (status === undefined && pending === undefined) throw notFound();

    // 2. Preconditions: the tenant keeps an administrator; holds defer.
    if (status === 'active' && (await this.#access.isLastAdmin(tx, tenantId, userId))) {
      if (mode.kind === 'release') return { kind: 'held' };
      throw new BulwarkError('conflict', { message: "The user is the tenant's last active tenant-admin: give another user the role first." });
    }
    const holds = await activeHolds(tx, tenantId, userId);
    const target = { type: 'user', id: userId };
    if (holds.length > 0) {
      if (mode.kind === 'release') return { kind: 'held' };
      // 3a. Deferred: restrict (no login, no session), keep everything else untouched under the hold.
      const sessionIds = await this.#sessions.revokeAllIn(tx, tenantId, userId, 'admin');
      await this.#users.disableIn(tx, tenantId, userId);
      const heldBy = holds.map((hold) => hold.id);
      const request =
        'pending' in origin
          ? await setErasureHolds(tx, tenantId, origin.pending.id, heldBy)
          : await withFreshId(
              async (id) =>
                (await insertErasure(tx, { tenantId, id, userId, status: 'pending', heldBy, reason: origin.requested.reason, requestedBy: origin.requested.requestedBy, now: this.#clock.now() })) ??
                retryWithNewId,
            );
      await this.#audit.record(tx, { tenantId }, { action: 'privacy.erase.deferred', target, detail: { requestId: request.id, holdIds: heldBy, sessionsRevoked: sessionIds.length } });
      return {
        kind: 'deferred',
        sessionIds,
        answer: { outcome: 'deferred', requestId: request.id, userId, reason: 'legal_hold', holds: holds.map(toActiveHold), sessionsRevoked: sessionIds.length },
      };
    }

    // 3b. Erased: sessions revoked first, then the user and what hangs off it, then their audit key.
    const sessionIds = await this.#sessions.revokeAllIn(tx, tenantId, userId, 'user_deleted');
    const rows = (await this.#users.eraseIn(tx, tenantId, userId)) ?? noRows;
    const keyErased = await this.#audit.forgetSubjectIn(tx, { tenantId }, userSubject(userId));
    const removed: RemovedCounts = { ...rows, auditSubjectKeys: keyErased ? 1 : 0 };
    const now = this.#clock.now();
    const request =
      'pending' in origin
        ? await completeErasure(tx, tenantId, origin.pending.id, removed, now)
        : await withFreshId(
            async (id) =>
              (await insertErasure(tx, { tenantId, id, userId, status: 'completed', removed, reason: origin.requested.reason, requestedBy: origin.requested.requestedBy, now })) ?? retryWithNewId,
          );
    // Counts and ids only: the event must not hold what it records the removal of.
    await this.#audit.record(tx, { tenantId }, {
      action: 'privacy.erase',
      target,
      detail: { requestId: request.id, removed, ...(mode.kind === 'release' ? { trigger: 'legal-hold.release', holdId: mode.holdId } : {}) },
    });
    return { kind: 'erased', sessionIds, answer: { outcome: 'erased', requestId: request.id, userId, removed } };
  }

  /** After the commit: this instance forgets the sessions' liveness and the destroyed key (a racing read may have cached either). */
  #afterCommit(tenantId: string, userId: string, step: ErasureStep): void {
    if (step.kind === 'held') return;
    this.#sessions.forgetLive(tenantId, step.sessionIds);
    if (step.kind === 'erased') this.#audit.dropSubjectKey({ tenantId }, userSubject(userId));
  }
}

function toHold(row: HoldRow): LegalHold {
  return {
    id: row.id,
    name: row.name,
    reason: row.reason,
    userId: row.user_id,
    active: row.released_at === null,
    createdAt: row.created_at.toISOString(),
    createdBy: row.created_by,
    releasedAt: row.released_at?.toISOString() ?? null,
    releasedBy: row.released_by,
  };
}

function toActiveHold(row: HoldRow): ActiveHold {
  return { id: row.id, name: row.name, userId: row.user_id };
}

function toErasure(row: ErasureRow): ErasureRequest {
  return {
    id: row.id,
    userId: row.user_id,
    status: row.status,
    reason: row.reason,
    requestedAt: row.requested_at.toISOString(),
    requestedBy: row.requested_by,
    heldBy: row.held_by,
    completedAt: row.completed_at?.toISOString() ?? null,
    removed: row.removed === null ? null : (row.removed as RemovedCounts),
  };
}
