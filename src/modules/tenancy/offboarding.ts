import { createHash } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import { type Database, enterTenantContext } from '../../platform/db/database.ts';
import type { DatabaseMaintenance } from '../../platform/db/maintenance.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { currentRequest } from '../../platform/http/request-context.ts';
import type { AgentsService } from '../agents/service.ts';
import type { AuditRecorder, AuditService } from '../audit/service.ts';
import type { KeyringService } from '../keys/service.ts';
import type { Offboarding, OffboardingProof, Tenant } from './schemas.ts';
import type { TenancyService } from './service.ts';
import {
  completeOffboarding,
  deleteOffboarding,
  findOffboarding,
  findTenant,
  insertOffboarding,
  markOffboardingConfirmed,
  markOffboardingVacuumed,
  type OffboardingRow,
  purgeTenant,
  recordOffboardingProgress,
  scrubTenant,
  setTenantStatus,
  toOffboarding,
} from './store.ts';

/**
 * What offboarding needs of backup storage (the backup service implements it): the operator archive for the
 * tenant's audit chain, and shredding the tenant out of every backup.
 */
export interface OffboardingStorage {
  /** Stores the archive in the tenant's region; answers the object's location. */
  archiveAudit(tenantId: string, region: string, content: Buffer): Promise<string>;
  /** Destroys the tenant's backup escrow key and deletes its backup segments. Running it again finds nothing more. */
  shredTenant(tenantId: string, region: string): Promise<{ escrowKeyDestroyed: boolean; objectsDeleted: number }>;
}

/** A legal hold in force: erasure is blocked while one exists (the privacy module keeps them). */
export interface LegalHold {
  id: string;
  name: string;
  userId: string | null;
}

export interface LegalHolds {
  activeHolds(tenantId: string): Promise<LegalHold[]>;
}

export interface OffboardingDependencies {
  tenancy: Pick<TenancyService, 'statusChanged'>;
  keyring: Pick<KeyringService, 'destroyWithin' | 'forget'>;
  audit: AuditRecorder & Pick<AuditService, 'exportStored'>;
  agents: Pick<AgentsService, 'revokeAll'>;
  storage: OffboardingStorage;
  holds: LegalHolds;
  /** The owner's table rewrite (openDatabase gives it); a process without it cannot confirm. */
  maintenance: DatabaseMaintenance | undefined;
}

export interface OffboardingOptions {
  graceHours: number;
  /** Export the tenant's audit chain to the operator archive before the purge. */
  archiveAudit: boolean;
}

const hourMs = 3_600_000;

function requester(): string {
  const actor = currentRequest()?.actor;
  return actor?.id == null ? 'system' : `${actor.kind}:${actor.id}`;
}

/**
 * Provable offboarding (DESIGN.md invariant 4), in two steps. A request puts the tenant in `offboarding`
 * (every tenant-scoped route, login and agent of it is refused) for a grace period in which it can be
 * cancelled. A confirmation then, in this order: exports the tenant's audit chain to the operator archive
 * (if configured), revokes its agents' credentials, shreds it out of every backup (its escrow key and its
 * segments), and in one transaction destroys its data keys, deletes every row of it from every tenant table,
 * scrubs the tenant row and records the proof (`tenant.offboard`, platform chain); last, every tenant table is
 * rewritten (VACUUM FULL) so no dead row version keeps its plaintext columns.
 *
 * Each step can run again: a confirmation that stopped half way is confirmed again and finishes, the steps
 * outside the database keep their results in the request's row so the proof counts them all. Legal holds
 * block the request and every confirmation until the purge.
 */
export class OffboardingService {
  readonly #db: Database;
  readonly #deps: OffboardingDependencies;
  readonly #clock: Clock;
  readonly #options: OffboardingOptions;

  constructor(db: Database, deps: OffboardingDependencies, clock: Clock, options: OffboardingOptions) {
    this.#db = db;
    this.#deps = deps;
    this.#clock = clock;
    this.#options = options;
  }

  /** `DELETE /v1/tenants/{t}`. Asking again while a request stands answers it unchanged. */
  async request(tenantId: string): Promise<Offboarding> {
    // 1. Load: an unknown or offboarded tenant does not exist; a standing request is the answer.
    const current = await this.#db.withPlatform(async (tx) => ({ tenant: await findTenant(tx, tenantId), offboarding: await findOffboarding(tx, tenantId) }));
    if (current.tenant === undefined || current.tenant.status === 'deleted') throw notFound();
    if (current.offboarding !== undefined) return toOffboarding(current.offboarding);
    // 2. Preconditions: no legal hold.
    await this.#refuseIfHeld(tenantId, 'tenant.offboarding.request');
    // 3. Mutate and audit, under the tenant row's lock (a concurrent request or status change waits).
    const now = this.#clock.now();
    const requested = await this.#db.withPlatform(async (tx) => {
      const tenant = await findTenant(tx, tenantId, { forUpdate: true });
      if (tenant === undefined || tenant.status === 'deleted') throw notFound();
      const standing = await findOffboarding(tx, tenantId);
      if (standing !== undefined) return standing;
      if (tenant.status === 'offboarding') throw new BulwarkError('internal_error', { detail: `tenant ${tenantId} is offboarding without a request` });
      const row = await insertOffboarding(tx, {
        tenantId,
        previousStatus: tenant.status,
        requestedBy: requester(),
        now,
        confirmableAt: new Date(now.getTime() + this.#options.graceHours * hourMs),
      });
      await setTenantStatus(tx, tenantId, 'offboarding', now);
      await this.#deps.audit.record(tx, 'platform', {
        action: 'tenant.offboarding.request',
        target: { type: 'tenant', id: tenantId },
        detail: { previousStatus: tenant.status, confirmableAt: row.confirmable_at.toISOString() },
      });
      return row;
    });
    this.#deps.tenancy.statusChanged(tenantId);
    return toOffboarding(requested);
  }

  async state(tenantId: string): Promise<Offboarding> {
    const row = await this.#db.withPlatform((tx) => findOffboarding(tx, tenantId));
    if (row === undefined) throw notFound();
    return toOffboarding(row);
  }

  /** Puts the tenant back in the status it had; refused once a confirmation began destroying. */
  async cancel(tenantId: string): Promise<Tenant> {
    const tenant = await this.#db.withPlatform(async (tx) => {
      const found = await findTenant(tx, tenantId, { forUpdate: true });
      if (found === undefined || found.status === 'deleted') throw notFound();
      const row = await findOffboarding(tx, tenantId, { forUpdate: true });
      if (row === undefined) throw new BulwarkError('conflict', { message: 'The tenant has no offboarding request to cancel.' });
      if (row.confirmed_at !== null) {
        throw new BulwarkError('conflict', { message: 'The offboarding was confirmed and has begun destroying the tenant; it cannot be cancelled. Confirm it again to finish.' });
      }
      const now = this.#clock.now();
      await setTenantStatus(tx, tenantId, row.previous_status, now);
      await deleteOffboarding(tx, tenantId);
      await this.#deps.audit.record(tx, 'platform', { action: 'tenant.offboarding.cancel', target: { type: 'tenant', id: tenantId }, detail: { status: row.previous_status } });
      return { ...found, status: row.previous_status, updatedAt: now.toISOString() };
    });
    this.#deps.tenancy.statusChanged(tenantId);
    return tenant;
  }

  /** The destruction, once the grace period is over (see the class comment for the order of the steps). */
  async confirm(tenantId: string): Promise<Offboarding> {
    const { maintenance } = this.#deps;
    if (maintenance === undefined) {
      throw new BulwarkError('service_unavailable', { message: 'This process cannot confirm offboardings: it has no database maintenance access.', detail: 'no DatabaseMaintenance' });
    }
    // 1. Load and check the preconditions: a request past its grace period, no legal hold.
    const loaded = await this.#load(tenantId);
    const { region } = loaded;
    let { row } = loaded;
    if (row.completed_at === null) {
      const now = this.#clock.now();
      if (row.confirmed_at === null && now.getTime() < row.confirmable_at.getTime()) {
        const confirmableAt = row.confirmable_at.toISOString();
        throw new BulwarkError('offboarding_grace_period', { message: `The grace period ends at ${confirmableAt}; confirm then.`, extensions: { confirmableAt } });
      }
      await this.#refuseIfHeld(tenantId, 'tenant.offboard');
      // 2. From here the request cannot be cancelled.
      await this.#db.withPlatform((tx) => markOffboardingConfirmed(tx, tenantId, requester(), now));
      ({ row } = await this.#load(tenantId));
      // 3. Outside the database, each result kept as soon as it is known.
      if (this.#options.archiveAudit && row.audit_archive === null) {
        const { content, events } = await this.#auditChain(tenantId);
        const location = await this.#deps.storage.archiveAudit(tenantId, region, content);
        await this.#progress(tenantId, { auditArchive: { location, sha256: createHash('sha256').update(content).digest('hex'), events } });
      }
      await this.#progress(tenantId, { agentsRevoked: await this.#deps.agents.revokeAll(tenantId) });
      await this.#progress(tenantId, { backups: await this.#deps.storage.shredTenant(tenantId, region) });
      // 4. The database, at once: keys, rows, the tenant row, the proof.
      row = await this.#purge(tenantId);
    }
    // 5. No dead row version of the tenant stays in the table files.
    if (row.vacuumed_at === null && row.proof !== null) {
      // Every tenant table, not only those it had rows in at the end: rows it deleted earlier left dead versions too.
      await maintenance.vacuumFull(['tenants', ...Object.keys(row.proof.rowsDeleted)]);
      await this.#db.withPlatform((tx) => markOffboardingVacuumed(tx, tenantId, this.#clock.now()));
      ({ row } = await this.#load(tenantId));
    }
    return toOffboarding(row);
  }

  /** The request and the tenant's region; an offboarded tenant keeps both. */
  async #load(tenantId: string): Promise<{ row: OffboardingRow; region: string }> {
    const { tenant, row } = await this.#db.withPlatform(async (tx) => ({ tenant: await findTenant(tx, tenantId), row: await findOffboarding(tx, tenantId) }));
    if (tenant === undefined || (row === undefined && tenant.status === 'deleted')) throw notFound();
    if (row === undefined) throw new BulwarkError('conflict', { message: 'The tenant has no offboarding request: ask for one first (DELETE /v1/tenants/{tenantId}).' });
    return { row, region: tenant.region };
  }

  /** Refuses (409 naming the holds) while a legal hold of the tenant is in force; the refusal is audited with the holds' ids. */
  async #refuseIfHeld(tenantId: string, action: 'tenant.offboarding.request' | 'tenant.offboard'): Promise<void> {
    const holds = await this.#deps.holds.activeHolds(tenantId);
    if (holds.length === 0) return;
    // Ids only: a hold's name is the tenant's text, and the platform chain outlives the tenant.
    await this.#deps.audit.recordAlone('platform', {
      action,
      outcome: 'failure',
      target: { type: 'tenant', id: tenantId },
      detail: { reason: 'legal_hold_active', holds: holds.map((hold) => hold.id) },
    });
    const named = holds.map((hold) => `"${hold.name}" (${hold.id})`).join(', ');
    throw new BulwarkError('legal_hold_active', {
      message: `Legal holds are in force over this tenant: ${named}. They must be released before it can be offboarded.`,
      extensions: { holds: holds.map((hold) => ({ id: hold.id, name: hold.name })) },
    });
  }

  async #progress(tenantId: string, progress: Parameters<typeof recordOffboardingProgress>[2]): Promise<void> {
    await this.#db.withPlatform((tx) => recordOffboardingProgress(tx, tenantId, progress));
  }

  /** The chain as stored (NDJSON, oldest first): it verifies on its own, and its personal data stays sealed. */
  async #auditChain(tenantId: string): Promise<{ content: Buffer; events: number }> {
    const lines: string[] = [];
    for await (const batch of this.#deps.audit.exportStored({ tenantId })) for (const event of batch) lines.push(`${JSON.stringify(event)}\n`);
    return { content: Buffer.from(lines.join(''), 'utf8'), events: lines.length };
  }

  async #purge(tenantId: string): Promise<OffboardingRow> {
    const purged = await this.#db.withPlatform(async (tx) => {
      // Under both locks a concurrent confirmation waits, then finds the work done.
      const tenant = await findTenant(tx, tenantId, { forUpdate: true });
      const row = await findOffboarding(tx, tenantId, { forUpdate: true });
      if (tenant === undefined || row === undefined) throw notFound();
      if (row.completed_at !== null) return row;
      const now = this.#clock.now();
      await enterTenantContext(tx, tenantId);
      const destroyedVersions = await this.#deps.keyring.destroyWithin(tx, tenantId, now);
      const rowsDeleted = Object.fromEntries(Object.entries(await purgeTenant(tx, tenantId)).sort(([a], [b]) => a.localeCompare(b)));
      await scrubTenant(tx, tenantId, now);
      const proof: OffboardingProof = {
        tenantId,
        region: tenant.region,
        requestedAt: row.requested_at.toISOString(),
        requestedBy: row.requested_by,
        confirmedAt: (row.confirmed_at ?? now).toISOString(),
        confirmedBy: row.confirmed_by ?? requester(),
        completedAt: now.toISOString(),
        dataKeys: { destroyedVersions },
        agentsRevoked: row.agents_revoked,
        rowsDeleted,
        rowsDeletedTotal: Object.values(rowsDeleted).reduce((sum, count) => sum + count, 0),
        backups: { escrowKeyDestroyed: row.backup_escrow_destroyed, objectsDeleted: row.backup_objects_deleted },
        auditArchive: row.audit_archive,
      };
      await completeOffboarding(tx, tenantId, proof, now);
      await this.#deps.audit.record(tx, 'platform', { action: 'tenant.offboard', target: { type: 'tenant', id: tenantId }, detail: proof });
      return { ...row, completed_at: now, proof };
    });
    this.#deps.keyring.forget(tenantId);
    this.#deps.tenancy.statusChanged(tenantId);
    return purged;
  }
}
