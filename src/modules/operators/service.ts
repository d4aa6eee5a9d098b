import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { newId } from '../../platform/ids.ts';
import { digestsEqual } from '../../platform/secret-compare.ts';
import { actAs } from '../../platform/http/request-context.ts';
import { CacheInvalidations } from '../../platform/invalidation.ts';
import { TtlCache } from '../../platform/ttl-cache.ts';
import type { PlatformRole } from '../access/permissions.ts';
import type { LoginRealm, PasswordAttempt, PasswordLogin } from '../identity/login.ts';
import { operatorThrottles } from '../identity/login-throttles-store.ts';
import { assertPasswordAcceptable, defaultPasswordPolicy } from '../identity/password-policy.ts';
import { type Argon2Params, defaultArgon2Params, hashPassword } from '../identity/passwords.ts';
import { normalizeEmail } from '../identity/service.ts';
import type { PlatformKey, PlatformKeys } from '../keys/platform-keys.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { RevokedReason } from '../sessions/login-sessions-store.ts';
import type { CreateOperatorBody, Operator, SetupBody, UpdateOperatorBody } from './schemas.ts';
import {
  countOperators,
  countOtherActiveAdmins,
  deleteOperator,
  deleteSetupToken,
  findLoginOperator,
  findOperator,
  findOperatorIdByEmail,
  insertOperator,
  listOperators,
  type OperatorRow,
  operatorPasswordHashes,
  readSetupTokenHash,
  replaceOperatorPassword,
  resealOperatorIfUnchanged,
  upgradeOperatorHash,
  updateOperator,
  writeSetupTokenHash,
} from './store.ts';

/** The PII of an operator, sealed as one envelope under the operators platform key. */
interface OperatorPii {
  email: string;
  name: string | null;
  lastLoginAt: string | null;
}

/** What the auth hook needs of an operator on each request (cached briefly). */
export interface OperatorStanding {
  role: PlatformRole;
  status: 'active' | 'disabled';
}

/** Ends an operator's sessions; the sessions module provides it. */
export interface OperatorSessionRevoker {
  revokeAllOf(scope: string, operatorId: string, reason: RevokedReason): Promise<void>;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest();
const piiContext = (id: string) => ({ table: 'operators', column: 'pii', rowId: id });
const emailTaken = () => new BulwarkError('conflict', { message: 'An operator with this e-mail address exists.' });
const lastAdmin = () => new BulwarkError('conflict', { message: 'The platform would have no active platform-admin left.' });
const maxIdAttempts = 5;

function toOperator(row: OperatorRow, pii: OperatorPii): Operator {
  return {
    id: row.id,
    email: pii.email,
    name: pii.name,
    role: row.role,
    status: row.status,
    passwordSet: row.password_set,
    mustChangePassword: row.must_change_password,
    passwordChangedAt: row.password_changed_at?.toISOString() ?? null,
    lastLoginAt: pii.lastLoginAt,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

export interface OperatorsOptions {
  /** How long an operator's role and status are reused by the auth hook; changes on other instances show within it. */
  cacheTtlMs: number;
  argon2?: Argon2Params;
  /** Tells the other instances about role and status changes, at once (without it: this instance only). */
  invalidations?: CacheInvalidations;
}

/**
 * Platform operators: their own realm, not a tenant's users. The first one is created by `POST /v1/setup`
 * with the one-time setup token, which that call spends; after that, platform admins manage operators.
 * E-mail and name are sealed under the `operators` platform key (the e-mail also as its keyed hash, for
 * lookup); passwords are Argon2id under the default password policy, with the same brute-force protection
 * as tenant logins (in the platform realm's own throttle rows).
 */
export class OperatorsService {
  readonly #db: Database;
  readonly #keys: PlatformKeys;
  readonly #clock: Clock;
  readonly #login: PasswordLogin;
  readonly #sessions: OperatorSessionRevoker;
  readonly #argon2: Argon2Params;
  readonly #standing: TtlCache<OperatorStanding | null>;
  readonly #audit: AuditRecorder;
  readonly #invalidations: CacheInvalidations;

  constructor(
    db: Database,
    keys: PlatformKeys,
    audit: AuditRecorder,
    clock: Clock,
    login: PasswordLogin,
    sessions: OperatorSessionRevoker,
    options: OperatorsOptions,
  ) {
    this.#db = db;
    this.#audit = audit;
    this.#keys = keys;
    this.#clock = clock;
    this.#login = login;
    this.#sessions = sessions;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    this.#standing = new TtlCache(options.cacheTtlMs, 10_000, clock);
    this.#invalidations = options.invalidations ?? new CacheInvalidations();
    this.#invalidations.on('operator', ({ operatorId }) => this.#standing.delete(operatorId));
  }

  // --- first run ---

  /**
   * Makes sure the setup token exists while there is no operator: the configured one (BULWARK_SETUP_TOKEN),
   * the stored one, or a new one, which is returned once for the terminal. Once an operator exists the
   * token is gone for good and nothing is returned.
   */
  async ensureSetupToken(configured: string | undefined): Promise<{ generated?: string; setupDone: boolean }> {
    return this.#db.withPlatform(async (tx) => {
      if ((await countOperators(tx)) > 0) {
        await deleteSetupToken(tx);
        return { setupDone: true };
      }
      if (configured !== undefined) {
        await writeSetupTokenHash(tx, sha256(configured));
        return { setupDone: false };
      }
      if ((await readSetupTokenHash(tx)) !== undefined) return { setupDone: false };
      const generated = `bws_${randomBytes(32).toString('base64url')}`;
      await writeSetupTokenHash(tx, sha256(generated));
      return { generated, setupDone: false };
    });
  }

  /** Spends the setup token on the first operator, a platform-admin. Wrong token: 401; done already: 409. */
  async setup(input: SetupBody): Promise<Operator> {
    const pii: OperatorPii = { email: input.email.trim(), name: input.name ?? null, lastLoginAt: null };
    const done = () => new BulwarkError('setup_completed', { message: 'Setup is done: log in as an operator (POST /v1/auth/operator/login).' });
    if (await this.#db.withPlatform(async (tx) => (await countOperators(tx)) > 0)) throw done();
    // The token is checked before the (slow) hash and again, locked, in the transaction that spends it.
    const presented = sha256(input.setupToken);
    const stored = await this.#db.withPlatform((tx) => readSetupTokenHash(tx));
    if (stored === undefined || !digestsEqual(presented, stored)) throw new BulwarkError('invalid_credentials', { message: 'The setup token is wrong.' });
    await assertPasswordAcceptable(input.password, defaultPasswordPolicy, { userInputs: [pii.email, pii.name].filter(isString) });
    const passwordHash = await hashPassword(input.password, this.#argon2);
    const key = await this.#keys.get('operators');
    return this.#db.withPlatform(async (tx) => {
      const locked = await readSetupTokenHash(tx, { forUpdate: true });
      if ((await countOperators(tx)) > 0) throw done();
      if (locked === undefined || !digestsEqual(presented, locked)) throw new BulwarkError('invalid_credentials', { message: 'The setup token is wrong.' });
      const row = await this.#insert(tx, key, { pii, role: 'platform-admin', passwordHash, mustChangePassword: false });
      await deleteSetupToken(tx);
      // Nobody was logged in: the setup token's holder acted, and became this operator.
      await this.#audit.record(tx, 'platform', {
        action: 'operator.setup',
        actor: { kind: 'anonymous', id: null },
        target: { type: 'operator', id: row.id },
        detail: { role: row.role },
      });
      return toOperator(row, pii);
    });
  }

  // --- accounts ---

  async create(input: CreateOperatorBody): Promise<Operator> {
    const pii: OperatorPii = { email: input.email.trim(), name: input.name ?? null, lastLoginAt: null };
    let passwordHash: string | null = null;
    if (input.password !== undefined) {
      await assertPasswordAcceptable(input.password, defaultPasswordPolicy, { userInputs: [pii.email, pii.name].filter(isString) });
      passwordHash = await hashPassword(input.password, this.#argon2);
    }
    const key = await this.#keys.get('operators');
    const row = await this.#db.withPlatform(async (tx) => {
      const inserted = await this.#insert(tx, key, { pii, role: input.role, passwordHash, mustChangePassword: passwordHash !== null && input.mustChangePassword !== false });
      await this.#audit.record(tx, 'platform', {
        action: 'operator.create',
        target: { type: 'operator', id: inserted.id },
        detail: { role: inserted.role, passwordSet: passwordHash !== null },
      });
      return inserted;
    });
    return toOperator(row, pii);
  }

  async list(limit: number, cursor: string | undefined): Promise<{ items: Operator[]; nextCursor: string | null }> {
    const key = await this.#keys.get('operators');
    const rows = await this.#db.withPlatform((tx) => listOperators(tx, decodeCursor(cursor), limit + 1));
    return toPage(rows, limit, (row) => toOperator(row, openPii(key, row)));
  }

  async get(id: string): Promise<Operator> {
    const key = await this.#keys.get('operators');
    const row = await this.#db.withPlatform((tx) => findOperator(tx, id));
    if (row === undefined) throw notFound();
    return toOperator(row, openPii(key, row));
  }

  async update(id: string, change: UpdateOperatorBody): Promise<Operator> {
    const key = await this.#keys.get('operators');
    const updated = await this.#db.withPlatform(async (tx) => {
      const row = await findOperator(tx, id, { forUpdate: true });
      if (row === undefined) throw notFound();
      const role = change.role ?? row.role;
      const status = change.status ?? row.status;
      const stillAdmin = role === 'platform-admin' && status === 'active';
      if (row.role === 'platform-admin' && row.status === 'active' && !stillAdmin && (await countOtherActiveAdmins(tx, id)) === 0) throw lastAdmin();
      const pii = openPii(key, row);
      const next: OperatorPii = {
        ...pii,
        ...(change.email === undefined ? {} : { email: change.email.trim() }),
        ...(change.name === undefined ? {} : { name: change.name }),
      };
      const emailHmac = key.lookupHash(normalizeEmail(next.email));
      if (!emailHmac.equals(row.email_hmac)) {
        const holder = await findOperatorIdByEmail(tx, emailHmac);
        if (holder !== undefined && holder !== id) throw emailTaken();
      }
      const sealed = key.seal(Buffer.from(JSON.stringify(next), 'utf8'), piiContext(id));
      const changed = await updateOperator(tx, id, { emailHmac, pii: sealed, role, status, now: this.#clock.now() });
      await this.#audit.record(tx, 'platform', {
        action: 'operator.update',
        target: { type: 'operator', id },
        detail: { fields: Object.keys(change).sort(), role, status, previousRole: row.role, previousStatus: row.status },
      });
      return toOperator(changed, next);
    });
    this.#invalidations.invalidate({ kind: 'operator', operatorId: id });
    if (updated.status === 'disabled') await this.#sessions.revokeAllOf('platform', id, 'admin');
    return updated;
  }

  async delete(id: string): Promise<void> {
    await this.#db.withPlatform(async (tx) => {
      const row = await findOperator(tx, id, { forUpdate: true });
      if (row === undefined) throw notFound();
      if (row.role === 'platform-admin' && row.status === 'active' && (await countOtherActiveAdmins(tx, id)) === 0) throw lastAdmin();
      await deleteOperator(tx, id);
      await this.#audit.record(tx, 'platform', { action: 'operator.delete', target: { type: 'operator', id }, detail: { role: row.role } });
    });
    this.#invalidations.invalidate({ kind: 'operator', operatorId: id });
    // The rows went with the operator (ON DELETE CASCADE); this drops the sessions' cached liveness too.
    await this.#sessions.revokeAllOf('platform', id, 'user_deleted');
  }

  /** Sets a password under the default policy and history: an admin's (`operator.password.set`) or the operator's own change. */
  async setPassword(id: string, password: string, options: { mustChangePassword: boolean; action: 'operator.password.set' | 'auth.password.change' }): Promise<void> {
    const { mustChangePassword } = options;
    const key = await this.#keys.get('operators');
    const policy = defaultPasswordPolicy;
    const { pii, current, history } = await this.#db.withPlatform(async (tx) => {
      const row = await findOperator(tx, id);
      if (row === undefined) throw notFound();
      return { pii: openPii(key, row), ...(await operatorPasswordHashes(tx, id, policy.historyCount)) };
    });
    await assertPasswordAcceptable(password, policy, { userInputs: [pii.email, pii.name].filter(isString), history: current === null ? history : [current, ...history] });
    const hash = await hashPassword(password, this.#argon2);
    await this.#db.withPlatform(async (tx) => {
      // The operator may have been deleted, or the password changed, while the hash was computed.
      if ((await findOperator(tx, id, { forUpdate: true })) === undefined) throw notFound();
      if ((await operatorPasswordHashes(tx, id, 0)).current !== current) throw new BulwarkError('conflict', { message: 'The password was changed concurrently; retry.' });
      await replaceOperatorPassword(tx, id, { hash, previous: current, mustChange: mustChangePassword, keep: policy.historyCount, now: this.#clock.now() });
      await this.#audit.record(tx, 'platform', { action: options.action, target: { type: 'operator', id }, detail: { mustChangePassword } });
    });
    await this.#sessions.revokeAllOf('platform', id, 'password_changed');
  }

  // --- login ---

  /** Logs an operator in; `onSuccess` runs in the transaction that records the login (it starts the session). */
  async authenticate<T extends { sessionId: string }>(attempt: PasswordAttempt, onSuccess: (tx: Queryable, operatorId: string) => Promise<T>): Promise<T> {
    return this.#login.authenticate(this.#realm(await this.#keys.get('operators')), attempt, { onSuccess, sessionOf: (result) => result.sessionId });
  }

  /** Self-service change with the current password; also the way out of an expired or admin-set password. */
  async changePassword(attempt: PasswordAttempt & { newPassword: string }): Promise<{ operatorId: string }> {
    const realm = this.#realm(await this.#keys.get('operators'));
    const id = await this.#login.authenticate(realm, attempt, { purpose: 'password-change', onSuccess: async (_tx, operatorId) => operatorId });
    actAs({ kind: 'operator', id });
    await this.setPassword(id, attempt.newPassword, { mustChangePassword: false, action: 'auth.password.change' });
    return { operatorId: id };
  }

  async unlock(id: string): Promise<void> {
    const email = (await this.get(id)).email;
    await this.#login.unlock(this.#realm(await this.#keys.get('operators')), email, id);
  }

  /** The operator's role and status for the auth hook; null once it is gone. Cached for `cacheTtlMs`. */
  async standing(id: string): Promise<OperatorStanding | null> {
    return this.#standing.getOrLoad(id, async () => {
      const row = await this.#db.withPlatform((tx) => findOperator(tx, id));
      return row === undefined ? null : { role: row.role, status: row.status };
    });
  }

  #realm(key: PlatformKey): LoginRealm {
    return {
      throttles: operatorThrottles,
      scope: 'platform',
      passwordChangeRoute: 'POST /v1/auth/operator/password',
      transaction: (work) => this.#db.withPlatform(work),
      lookupHashes: (email, source) => ({ account: key.lookupHash(email), source: key.lookupHash(`source:${source}`) }),
      findAccount: (tx, emailHash) => findLoginOperator(tx, emailHash),
      passwordPolicy: async () => defaultPasswordPolicy,
      auditScope: 'platform',
      accountKind: 'operator',
      upgradeHash: (tx, id, previous, next) => upgradeOperatorHash(tx, id, previous, next),
      recordLogin: async (tx, account, at) => {
        const pii: OperatorPii = { ...(JSON.parse(key.open(account.pii, piiContext(account.id)).toString('utf8')) as OperatorPii), lastLoginAt: at.toISOString() };
        await resealOperatorIfUnchanged(tx, account.id, account.pii, key.seal(Buffer.from(JSON.stringify(pii), 'utf8'), piiContext(account.id)));
      },
    };
  }

  async #insert(
    tx: Queryable,
    key: PlatformKey,
    entry: { pii: OperatorPii; role: PlatformRole; passwordHash: string | null; mustChangePassword: boolean },
  ): Promise<OperatorRow> {
    const emailHmac = key.lookupHash(normalizeEmail(entry.pii.email));
    if ((await findOperatorIdByEmail(tx, emailHmac)) !== undefined) throw emailTaken();
    for (let attempt = 0; attempt < maxIdAttempts; attempt += 1) {
      const id = newId();
      const row = await insertOperator(tx, {
        id,
        emailHmac,
        pii: key.seal(Buffer.from(JSON.stringify(entry.pii), 'utf8'), piiContext(id)),
        role: entry.role,
        passwordHash: entry.passwordHash,
        mustChangePassword: entry.mustChangePassword,
        now: this.#clock.now(),
      });
      if (row !== undefined) return row;
      if ((await findOperatorIdByEmail(tx, emailHmac)) !== undefined) throw emailTaken();
    }
    throw new BulwarkError('conflict', { message: 'Could not allocate an operator id; retry.' });
  }
}

function openPii(key: PlatformKey, row: OperatorRow): OperatorPii {
  return JSON.parse(key.open(row.pii, piiContext(row.id)).toString('utf8')) as OperatorPii;
}

function isString(value: string | null): value is string {
  return value !== null;
}
