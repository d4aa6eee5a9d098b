import type { Clock } from '../../platform/clock.ts';
import type { Database, Queryable } from '../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../platform/errors/bulwark-error.ts';
import { decodeCursor, toPage } from '../../platform/http/pagination.ts';
import { newId } from '../../platform/ids.ts';
import type { EnvelopeContext } from '../keys/envelope.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { QuotaGuard } from '../limits/service.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../keys/service.ts';
import { assertPasswordAcceptable, defaultPasswordPolicy, type PasswordPolicy, policyProblems, withPolicyDefaults } from './password-policy.ts';
import { type Argon2Params, defaultArgon2Params, hashPassword, importedHash, ImportedHashError } from './passwords.ts';
import type { CreateUserBody, ImportUsersBody, UpdateUserBody, User } from './schemas.ts';
import {
  countUsersByKeyVersion,
  deleteUser,
  disableUser,
  type ErasedUserRows,
  eraseUser,
  findPasswordPolicy,
  findUser,
  findUserIdByEmail,
  insertUser,
  legacyHashUsers,
  listUsers,
  lockStaleUsers,
  lockUser,
  passwordHashOf,
  passwordHistory,
  replacePassword,
  resealUser,
  resealUserIfUnchanged,
  updateUser,
  upsertPasswordPolicy,
  type LoginAccount,
  type UserRow,
} from './store.ts';

/** The PII of a user, stored as one envelope: nothing here is ever in the database in clear. */
interface UserPii {
  email: string;
  firstName: string | null;
  lastName: string | null;
  lastLoginAt: string | null;
}

const maxIdAttempts = 5;

/** The lookup form of an e-mail address: trimmed, NFC, lowercased (the domain is case-insensitive; most mailboxes are too). */
export function normalizeEmail(email: string): string {
  return email.trim().normalize('NFC').toLowerCase();
}

function piiContext(tenantId: string, id: string): EnvelopeContext {
  return { tenantId, table: 'users', column: 'pii', rowId: id };
}

function sealPii(keys: TenantKeys, tenantId: string, id: string, pii: UserPii): { pii: Buffer; keyVersion: number } {
  const { ciphertext, keyVersion } = keys.seal(Buffer.from(JSON.stringify(pii), 'utf8'), piiContext(tenantId, id));
  return { pii: ciphertext, keyVersion };
}

function openPii(keys: TenantKeys, tenantId: string, row: UserRow): UserPii {
  return JSON.parse(keys.open(row.pii, piiContext(tenantId, row.id), 'data_integrity_failed').toString('utf8')) as UserPii;
}

/**
 * The login's stamp: the last login time into the sealed PII (re-sealed under the current key version), in
 * the login's transaction, only if the PII is still what the login read.
 */
export async function stampLogin(tx: Queryable, keys: TenantKeys, tenantId: string, account: LoginAccount, at: Date): Promise<void> {
  const context = piiContext(tenantId, account.id);
  const pii = JSON.parse(keys.open(account.pii, context, 'data_integrity_failed').toString('utf8')) as UserPii;
  await resealUserIfUnchanged(tx, tenantId, account.id, account.pii, sealPii(keys, tenantId, account.id, { ...pii, lastLoginAt: at.toISOString() }));
}

function toUser(row: UserRow, pii: UserPii): User {
  return {
    id: row.id,
    email: pii.email,
    firstName: pii.firstName,
    lastName: pii.lastName,
    status: row.status,
    passwordSet: row.password_set,
    mustChangePassword: row.must_change_password,
    passwordChangedAt: row.password_changed_at?.toISOString() ?? null,
    lastLoginAt: pii.lastLoginAt,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

const emailTaken = () => new BulwarkError('conflict', { message: 'A user with this e-mail address already exists in this tenant.' });

/**
 * A tenant's users. The PII (e-mail, names, last login) is sealed with the tenant data key; the e-mail is
 * also kept as a keyed hash (HMAC under the tenant's lookup key) for uniqueness and lookup. Passwords are
 * Argon2id hashes checked against the tenant's policy; imported legacy hashes wait for the next login.
 */
function newUserPii(input: CreateUserBody): UserPii {
  return { email: input.email.trim(), firstName: input.firstName ?? null, lastName: input.lastName ?? null, lastLoginAt: null };
}

export class UsersService implements Reencryptor {
  readonly name = 'users';
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #clock: Clock;
  readonly #argon2: Argon2Params;
  readonly #audit: AuditRecorder;
  readonly #quotas: QuotaGuard;

  constructor(db: Database, keyring: KeyringService, audit: AuditRecorder, quotas: QuotaGuard, clock: Clock, options: { argon2?: Argon2Params } = {}) {
    this.#db = db;
    this.#quotas = quotas;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#clock = clock;
    this.#argon2 = options.argon2 ?? defaultArgon2Params;
    keyring.registerReencryptor(this);
  }

  /** Checks a would-be user against the default policy before there is a tenant to hold it. */
  async assertAcceptableForNewTenant(input: CreateUserBody): Promise<void> {
    if (input.password !== undefined) await this.#assertAcceptable(input.password, defaultPasswordPolicy, newUserPii(input), []);
  }

  /**
   * Creates a user. `roles` are given in the same transaction (a tenant's first admin); the one audit event
   * names them.
   */
  async create(tenantId: string, input: CreateUserBody, options: { roles?: { names: readonly string[]; grant: (tx: Queryable, userId: string) => Promise<void> } } = {}): Promise<User> {
    const pii = newUserPii(input);
    let passwordHash: string | null = null;
    if (input.password !== undefined) {
      const policy = await this.passwordPolicy(tenantId);
      await this.#assertAcceptable(input.password, policy, pii, []);
      passwordHash = await hashPassword(input.password, this.#argon2);
    }
    const [created] = await this.#insert(tenantId, [{ pii, passwordHash, mustChangePassword: input.mustChangePassword ?? false }], async (tx, users) => {
      const [user] = users;
      if (user === undefined) return;
      await options.roles?.grant(tx, user.id);
      await this.#audit.record(tx, { tenantId }, {
        action: 'user.create',
        target: { type: 'user', id: user.id },
        detail: { passwordSet: passwordHash !== null, roles: [...(options.roles?.names ?? [])].sort() },
      });
    });
    if (created === undefined) throw new BulwarkError('internal_error', { detail: 'user insert returned nothing' });
    return created;
  }

  /** All or nothing: one taken e-mail (in the tenant or twice in the batch) refuses the whole batch. */
  async import(tenantId: string, input: ImportUsersBody): Promise<{ users: { id: string; email: string }[] }> {
    const seen = new Set<string>();
    const entries = input.users.map((entry, index) => {
      const normalized = normalizeEmail(entry.email);
      if (seen.has(normalized)) {
        throw new BulwarkError('validation_failed', { message: `users[${index}]: the e-mail address appears twice in the batch.` });
      }
      seen.add(normalized);
      let passwordHash: string;
      try {
        passwordHash = importedHash(entry.credential);
      } catch (error) {
        if (error instanceof ImportedHashError) throw new BulwarkError('validation_failed', { message: `users[${index}].credential: ${error.message}` });
        throw error;
      }
      const pii: UserPii = { email: entry.email.trim(), firstName: entry.firstName ?? null, lastName: entry.lastName ?? null, lastLoginAt: null };
      return { pii, passwordHash, mustChangePassword: false };
    });
    const users = await this.#insert(tenantId, entries, async (tx, created) => {
      await this.#audit.record(tx, { tenantId }, { action: 'user.import', detail: { count: created.length, userIds: created.map((user) => user.id) } });
    });
    return { users: users.map((user) => ({ id: user.id, email: user.email })) };
  }

  async get(tenantId: string, id: string): Promise<User> {
    return this.#keyring.withKeys(tenantId, async (keys) => {
      const row = await this.#db.withTenant(tenantId, (tx) => findUser(tx, tenantId, id));
      if (row === undefined) throw notFound();
      return toUser(row, openPii(keys, tenantId, row));
    });
  }

  async list(tenantId: string, query: { limit?: number | undefined; cursor?: string | undefined; email?: string | undefined }) {
    const limit = query.limit ?? 50;
    const after = decodeCursor(query.cursor);
    return this.#keyring.withKeys(tenantId, async (keys) => {
      const emailHmac = query.email === undefined ? undefined : keys.lookupHash(normalizeEmail(query.email));
      const rows = await this.#db.withTenant(tenantId, (tx) => listUsers(tx, tenantId, after, limit + 1, emailHmac));
      return toPage(rows, limit, (row) => toUser(row, openPii(keys, tenantId, row)));
    });
  }

  /** `guard` runs in the transaction before a user is disabled (e.g. keep the last admin active). */
  async update(tenantId: string, id: string, change: UpdateUserBody, options: { guard?: (tx: Queryable) => Promise<void> } = {}): Promise<User> {
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const row = await findUser(tx, tenantId, id, { forUpdate: true });
        if (row === undefined) throw notFound();
        if (change.status === 'disabled' && row.status !== 'disabled') await options.guard?.(tx);
        const pii = openPii(keys, tenantId, row);
        const next: UserPii = {
          ...pii,
          ...(change.email === undefined ? {} : { email: change.email.trim() }),
          ...(change.firstName === undefined ? {} : { firstName: change.firstName }),
          ...(change.lastName === undefined ? {} : { lastName: change.lastName }),
        };
        const emailHmac = keys.lookupHash(normalizeEmail(next.email));
        if (!emailHmac.equals(row.email_hmac)) {
          const holder = await findUserIdByEmail(tx, tenantId, emailHmac);
          if (holder !== undefined && holder !== id) throw emailTaken();
        }
        const sealed = sealPii(keys, tenantId, id, next);
        const updated = await updateUser(tx, tenantId, id, { emailHmac, ...sealed, status: change.status ?? row.status, now: this.#clock.now() });
        // Which fields changed, never their values (e-mail and names are personal data).
        await this.#audit.record(tx, { tenantId }, {
          action: 'user.update',
          target: { type: 'user', id },
          detail: { fields: Object.keys(change).sort(), ...(change.status === undefined ? {} : { status: change.status }) },
        });
        return toUser(updated, next);
      }),
    );
  }

  async emailOf(tenantId: string, id: string): Promise<string> {
    return (await this.get(tenantId, id)).email;
  }

  /** `guard` runs in the transaction before the user goes (e.g. keep the last admin). */
  async delete(tenantId: string, id: string, options: { guard?: (tx: Queryable) => Promise<void> } = {}): Promise<void> {
    const deleted = await this.#db.withTenant(tenantId, async (tx) => {
      if ((await findUser(tx, tenantId, id, { forUpdate: true })) === undefined) throw notFound();
      await options.guard?.(tx);
      const removed = await deleteUser(tx, tenantId, id);
      if (removed) await this.#audit.record(tx, { tenantId }, { action: 'user.delete', target: { type: 'user', id } });
      return removed;
    });
    if (!deleted) throw notFound();
  }

  // --- in the caller's transaction, for a change that records its own event (the privacy module's erasure) ---

  /** Locks the user's row for the rest of `tx` and answers its status; undefined when there is no such user. */
  async lockIn(tx: Queryable, tenantId: string, id: string, mode: 'update' | 'share'): Promise<'active' | 'disabled' | undefined> {
    return lockUser(tx, tenantId, id, mode);
  }

  /** Disables the user (login refused); false when it was disabled already. */
  async disableIn(tx: Queryable, tenantId: string, id: string): Promise<boolean> {
    return disableUser(tx, tenantId, id, this.#clock.now());
  }

  /**
   * Deletes the user with everything that hangs off it (password history, sessions and refresh tokens,
   * second factors, recovery codes, challenges, SSO links, role assignments) and its login throttles, and
   * answers how many rows of each went; undefined when there is no such user.
   */
  async eraseIn(tx: Queryable, tenantId: string, id: string): Promise<ErasedUserRows | undefined> {
    return eraseUser(tx, tenantId, id);
  }

  /**
   * Sets a password: policy and history apply. An admin's (`user.password.set`) must by default be changed at
   * the next login; the user's own change (`auth.password.change`) need not.
   */
  async setPassword(
    tenantId: string,
    id: string,
    password: string,
    options: { mustChangePassword: boolean; action: 'user.password.set' | 'auth.password.change' } = { mustChangePassword: true, action: 'user.password.set' },
  ): Promise<void> {
    const { mustChangePassword } = options;
    const policy = await this.passwordPolicy(tenantId);
    const { pii, previous, history } = await this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const row = await findUser(tx, tenantId, id);
        if (row === undefined) throw notFound();
        const previous = await passwordHashOf(tx, tenantId, id);
        const earlier = policy.historyCount === 0 ? [] : await passwordHistory(tx, tenantId, id, policy.historyCount);
        return { pii: openPii(keys, tenantId, row), previous, history: previous === null ? earlier : [previous, ...earlier] };
      }),
    );
    await this.#assertAcceptable(password, policy, pii, history);
    const hash = await hashPassword(password, this.#argon2);
    await this.#db.withTenant(tenantId, async (tx) => {
      // The user may have been deleted, or the password changed, while the hash was computed.
      if ((await findUser(tx, tenantId, id, { forUpdate: true })) === undefined) throw notFound();
      if ((await passwordHashOf(tx, tenantId, id)) !== previous) {
        throw new BulwarkError('conflict', { message: 'The password was changed concurrently; retry.' });
      }
      await replacePassword(tx, tenantId, id, { hash, previous, mustChange: mustChangePassword, keep: policy.historyCount, now: this.#clock.now() });
      await this.#audit.record(tx, { tenantId }, { action: options.action, target: { type: 'user', id }, detail: { mustChangePassword } });
    });
  }

  async legacyHashReport(tenantId: string) {
    const { rows, counts } = await this.#db.withTenant(tenantId, (tx) => legacyHashUsers(tx, tenantId, 1000));
    const md5 = counts['md5'] ?? 0;
    const pbkdf2 = counts['pbkdf2-sha256'] ?? 0;
    return { total: md5 + pbkdf2, byAlgorithm: { md5, 'pbkdf2-sha256': pbkdf2 }, users: rows };
  }

  async passwordPolicy(tenantId: string): Promise<PasswordPolicy> {
    return withPolicyDefaults(await this.#db.withTenant(tenantId, (tx) => findPasswordPolicy(tx, tenantId)));
  }

  async setPasswordPolicy(tenantId: string, policy: PasswordPolicy): Promise<PasswordPolicy> {
    const problems = policyProblems(policy);
    if (problems.length > 0) {
      throw new BulwarkError('validation_failed', {
        message: problems.map((problem) => `${problem.field}: ${problem.message}`).join(' '),
        extensions: { errors: problems.map((problem) => ({ field: `/${problem.field}`, message: problem.message })) },
      });
    }
    await this.#db.withTenant(tenantId, async (tx) => {
      await upsertPasswordPolicy(tx, tenantId, policy, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'password-policy.update', target: { type: 'password-policy', id: tenantId }, detail: { ...policy } });
    });
    return policy;
  }

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countUsersByKeyVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleUsers(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const sealed = sealPii(keys, tenantId, row.id, openPii(keys, tenantId, row));
        await resealUser(tx, tenantId, row.id, sealed.pii, sealed.keyVersion);
      }
      return rows.length;
    });
  }

  async #assertAcceptable(password: string, policy: PasswordPolicy, pii: UserPii, history: string[]): Promise<void> {
    const userInputs = [pii.email, pii.firstName, pii.lastName].filter((value): value is string => value !== null);
    await assertPasswordAcceptable(password, policy, { userInputs, history });
  }

  /** Inserts users in one transaction, each with a fresh id; a taken e-mail refuses the lot. `then` completes the transaction. */
  async #insert(
    tenantId: string,
    entries: { pii: UserPii; passwordHash: string | null; mustChangePassword: boolean }[],
    then: (tx: Queryable, users: User[]) => Promise<void>,
  ): Promise<User[]> {
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        await this.#quotas.assertUserCapacity(tx, tenantId, entries.length);
        const created: User[] = [];
        for (const [index, entry] of entries.entries()) {
          const emailHmac = keys.lookupHash(normalizeEmail(entry.pii.email));
          if ((await findUserIdByEmail(tx, tenantId, emailHmac)) !== undefined) {
            const error = emailTaken();
            throw entries.length === 1 ? error : new BulwarkError('conflict', { message: `users[${index}]: ${error.message}` });
          }
          const row = await this.#insertWithFreshId(tx, tenantId, keys, entry, emailHmac);
          created.push(toUser(row, entry.pii));
        }
        await then(tx, created);
        return created;
      }),
    );
  }

  async #insertWithFreshId(
    tx: Queryable,
    tenantId: string,
    keys: TenantKeys,
    entry: { pii: UserPii; passwordHash: string | null; mustChangePassword: boolean },
    emailHmac: Buffer,
  ): Promise<UserRow> {
    for (let attempt = 0; attempt < maxIdAttempts; attempt += 1) {
      const id = newId();
      const row = await insertUser(tx, {
        tenantId,
        id,
        emailHmac,
        ...sealPii(keys, tenantId, id, entry.pii),
        passwordHash: entry.passwordHash,
        mustChangePassword: entry.mustChangePassword,
        now: this.#clock.now(),
      });
      if (row !== undefined) return row;
      // The e-mail was checked in this transaction, so a conflict is an id collision (or a concurrent
      // insert of the same address, which the next attempt's unique check turns into a 409).
      if ((await findUserIdByEmail(tx, tenantId, emailHmac)) !== undefined) throw emailTaken();
    }
    throw new BulwarkError('conflict', { message: 'Could not allocate a user id; retry.' });
  }
}
