import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../platform/db/database.ts';
import { toBuffer } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import type { Authenticator, Principal } from '../../platform/http/auth.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { withFreshId } from '../../platform/ids.ts';
import { digestsEqual } from '../../platform/secret-compare.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import { isTenantPermission } from '../access/permissions.ts';
import { assertHeld } from '../access/service.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { QuotaGuard } from '../limits/service.ts';
import type { ApiKey } from './schemas.ts';
import {
  apiKeyCredentialSql,
  type ApiKeyCredentialRow,
  insertApiKey,
  listApiKeysSql,
  revokeApiKey,
  toApiKeys,
  touchApiKeySql,
} from './store.ts';

const sha256 = (value: string) => createHash('sha256').update(value).digest();

type ApiKeyPrincipal = Principal & { kind: 'api-key' };
/** A verified key; `lastUsedAt` is the one mutable field (when this instance last recorded a use). */
interface VerifiedKey {
  principal: ApiKeyPrincipal;
  expiresAt: number;
  lastUsedAt: number;
}
const lastUsedResolutionMs = 60_000;

const apiKeyShape = /^bwk_([0-9a-f]{12})([0-9a-f]{12})([A-Za-z0-9_-]{43})$/;

/**
 * Tenant API keys: `bwk_<tenantId><keyId><secret>`. The prefix lets secret scanners find leaked keys;
 * the tenant id lets the lookup run under that tenant's RLS context. Verified keys are cached briefly,
 * keyed by the token's hash, so a repeated key costs one SHA-256 and a map lookup.
 */
export class ApiKeyService implements Authenticator {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #verified: TtlCache<VerifiedKey>;
  readonly #onBackgroundError: (error: unknown, message: string) => void;
  readonly #audit: AuditRecorder;
  readonly #quotas: QuotaGuard;
  readonly #invalidations: CacheInvalidations;

  constructor(
    db: Database,
    audit: AuditRecorder,
    quotas: QuotaGuard,
    clock: Clock,
    options: { cacheTtlMs: number; onBackgroundError?: (error: unknown, message: string) => void; invalidations?: CacheInvalidations },
  ) {
    this.#db = db;
    this.#quotas = quotas;
    this.#audit = audit;
    this.#clock = clock;
    this.#verified = new TtlCache(options.cacheTtlMs, 50_000, clock);
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    // Entries are keyed by the token's hash, which the message does not carry: they are found by key id.
    this.#invalidations.on('api-key', ({ tenantId, keyId }) => this.#verified.deleteWhere(({ principal }) => principal.tenantId === tenantId && principal.id === keyId));
  }

  /** `caller` is what the creating principal holds here: a key never gets more than its creator. */
  async create(
    tenantId: string,
    input: { name: string; expiresAt?: string | undefined; scopes?: string[] | undefined },
    caller: ReadonlySet<string>,
  ): Promise<ApiKey & { key: string }> {
    const now = this.#clock.now();
    const expiresAt = input.expiresAt === undefined ? null : new Date(input.expiresAt);
    if (expiresAt !== null && expiresAt.getTime() <= now.getTime()) {
      throw new BulwarkError('validation_failed', { message: 'expiresAt must lie in the future.' });
    }
    const scopes = input.scopes ?? [...caller].filter(isTenantPermission).sort();
    if (scopes.length === 0) throw new BulwarkError('forbidden', { message: 'You hold no permission to give the key.' });
    assertHeld(caller, scopes);
    const secret = randomBytes(32).toString('base64url');
    const created = await this.#db.withTenant(tenantId, async (tx) => {
      await this.#quotas.assertApiKeyCapacity(tx, tenantId);
      const key = await withFreshId((id) => insertApiKey(tx, { tenantId, id, name: input.name, scopes, secretHash: sha256(secret), expiresAt, now }));
      await this.#audit.record(tx, { tenantId }, { action: 'api-key.create', target: { type: 'api-key', id: key.id }, detail: { scopes, expiresAt: key.expiresAt } });
      return key;
    });
    return { ...created, key: `bwk_${tenantId}${created.id}${secret}` };
  }

  async list(tenantId: string, limit: number, cursor: string | undefined) {
    const after = decodeCursor(cursor);
    const { rows } = await this.#db.tenantQuery<Parameters<typeof toApiKeys>[0][number]>(tenantId, listApiKeysSql, [tenantId, after, limit + 1]);
    return toPage(toApiKeys(rows), limit, (key) => key);
  }

  async revoke(tenantId: string, keyId: string): Promise<void> {
    const revoked = await this.#db.withTenant(tenantId, async (tx) => {
      const done = await revokeApiKey(tx, tenantId, keyId, this.#clock.now());
      if (done) await this.#audit.record(tx, { tenantId }, { action: 'api-key.revoke', target: { type: 'api-key', id: keyId } });
      return done;
    });
    if (!revoked) throw notFound();
    this.#invalidations.invalidate({ kind: 'api-key', tenantId, keyId });
  }

  accepts(token: string): boolean {
    return token.startsWith('bwk_');
  }

  async authenticate(token: string): Promise<Principal | null> {
    const match = apiKeyShape.exec(token);
    if (!match) return null;
    const [, tenantId = '', keyId = '', secret = ''] = match;
    const cacheKey = sha256(token).toString('hex');
    const now = this.#clock.now().getTime();
    const cached = this.#verified.get(cacheKey);
    if (cached && cached.expiresAt > now) {
      this.#touch(cached, now);
      return cached.principal;
    }

    const since = this.#verified.mark();
    const { rows } = await this.#db.tenantQuery<ApiKeyCredentialRow>(tenantId, apiKeyCredentialSql, [tenantId, keyId]);
    const row = rows[0];
    if (!row || !digestsEqual(sha256(secret), toBuffer(row.secret_hash))) return null;
    if (row.revoked_at !== null || (row.expires_at !== null && row.expires_at.getTime() <= now)) return null;
    const principal = Object.freeze({ kind: 'api-key' as const, id: keyId, tenantId, scopes: Object.freeze([...row.scopes]) });
    const entry = { principal, expiresAt: row.expires_at?.getTime() ?? Number.POSITIVE_INFINITY, lastUsedAt: row.last_used_at?.getTime() ?? 0 };
    this.#verified.set(cacheKey, entry, since);
    this.#touch(entry, now);
    return principal;
  }

  /**
   * Records the last use at most once a minute per key and instance, off the request path: a failed
   * write costs only the timestamp's freshness, never the request.
   */
  #touch(entry: VerifiedKey, now: number): void {
    if (now - entry.lastUsedAt < lastUsedResolutionMs) return;
    entry.lastUsedAt = now;
    const { tenantId, id } = entry.principal;
    this.#db.tenantQuery(tenantId, touchApiKeySql, [tenantId, id, new Date(now)]).catch((error: unknown) => this.#onBackgroundError(error, 'api key last-used update failed'));
  }
}
