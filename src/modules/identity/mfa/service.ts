import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../../platform/clock.ts';
import type { Database, Queryable } from '../../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../../platform/errors/bulwark-error.ts';
import { newId } from '../../../platform/ids.ts';
import { administrativePermissions } from '../../access/permissions.ts';
import type { AccessService } from '../../access/service.ts';
import type { AuditRecorder } from '../../audit/service.ts';
import type { EnvelopeContext } from '../../keys/envelope.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../../keys/service.ts';
import type { LoginService } from '../login.ts';
import type { UsersService } from '../service.ts';
import { newRecoveryCodes, normalizeRecoveryCode } from './recovery-codes.ts';
import {
  acceptTotpStep,
  advanceSignCount,
  countFactorsByKeyVersion,
  deleteAllFactors,
  deleteFactor,
  deletePendingTotp,
  type FactorRow,
  findFactor,
  findLoginPolicy,
  insertChallenge,
  insertFactor,
  listFactors,
  lockChallenge,
  lockRegistrationCeremony,
  lockStaleTotpSeeds,
  type MfaMode,
  replaceRecoveryCodes,
  resealTotpSeed,
  spendRecoveryCode,
  unusedRecoveryCodes,
  updateChallenge,
  upsertLoginPolicy,
  userIsActive,
} from './store.ts';
import { acceptedTotpStep, newTotpSeed, totpProvisioning } from './totp.ts';
import {
  authenticationOptions,
  credentialIdOf,
  registrationOptions,
  type StoredCredential,
  verifyAuthentication,
  verifyRegistration,
  WebAuthnRefusal,
  type WebAuthnRelyingParty,
} from './webauthn.ts';

export type MfaMethod = 'totp' | 'webauthn' | 'recovery-code';

export interface MfaFactor {
  id: string;
  kind: 'totp' | 'webauthn';
  name: string;
  status: 'pending' | 'active';
  createdAt: string;
  lastUsedAt: string | null;
}

/** What the login answers instead of tokens when a second factor is due (or a first one must be enrolled). */
export interface MfaChallenge {
  challengeToken: string;
  purpose: 'verify' | 'enroll';
  methods: MfaMethod[];
  expiresAt: string;
}

export type MfaProof = { method: 'totp'; code: string } | { method: 'recovery-code'; code: string } | { method: 'webauthn'; credential: unknown };

export interface MfaOptions {
  /** The name authenticator apps show (TOTP issuer). */
  issuer: string;
  relyingParty: WebAuthnRelyingParty;
  challengeTtlMs: number;
  /** Wrong proofs one challenge takes before it is spent (the account throttle counts them too). */
  challengeMaxAttempts: number;
}

/** `bwm_<tenantId><43 base64url chars>`: the tenant routes the lookup (RLS), the rest is 256 random bits. */
const challengeTokenPattern = /^bwm_([0-9a-f]{12})[A-Za-z0-9_-]{43}$/;
/** The tenant a challenge token names (its lookup runs under that tenant's RLS context). */
export function challengeTenant(challengeToken: string): string | undefined {
  return challengeTokenPattern.exec(challengeToken)?.[1];
}
const sha256 = (value: string) => createHash('sha256').update(value).digest();
const invalidChallenge = () => new BulwarkError('mfa_challenge_invalid');

function seedContext(tenantId: string, factorId: string): EnvelopeContext {
  return { tenantId, table: 'mfa_factors', column: 'secret', rowId: factorId };
}

function toFactor(row: FactorRow): MfaFactor {
  return { id: row.id, kind: row.kind, name: row.name, status: row.status, createdAt: row.created_at.toISOString(), lastUsedAt: row.last_used_at?.toISOString() ?? null };
}

function storedCredential(row: FactorRow): StoredCredential {
  return { credentialId: row.credential_id ?? '', publicKey: row.public_key ?? Buffer.alloc(0), counter: row.sign_count ?? 0, transports: row.transports ?? [] };
}

function methodsOf(factors: readonly FactorRow[], recoveryCodes: number): MfaMethod[] {
  const active = factors.filter((factor) => factor.status === 'active');
  const methods: MfaMethod[] = [];
  if (active.some((factor) => factor.kind === 'totp')) methods.push('totp');
  if (active.some((factor) => factor.kind === 'webauthn')) methods.push('webauthn');
  if (recoveryCodes > 0) methods.push('recovery-code');
  return methods;
}

/**
 * Second factors: TOTP, WebAuthn passkeys and one-time recovery codes; the tenant's MFA policy; and the
 * login's second step. TOTP seeds are sealed with the tenant key (AAD: tenant, table, column, factor id);
 * recovery codes are keyed hashes; WebAuthn keeps public keys only. The challenge a login gets is a
 * server-side row: the client holds only its token, whose hash is stored.
 */
export class MfaService implements Reencryptor {
  readonly name = 'mfa_factors';
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #audit: AuditRecorder;
  readonly #access: AccessService;
  readonly #users: UsersService;
  readonly #login: LoginService;
  readonly #clock: Clock;
  readonly #options: MfaOptions;

  constructor(
    db: Database,
    keyring: KeyringService,
    audit: AuditRecorder,
    services: { access: AccessService; users: UsersService; login: LoginService },
    clock: Clock,
    options: MfaOptions,
  ) {
    this.#db = db;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#access = services.access;
    this.#users = services.users;
    this.#login = services.login;
    this.#clock = clock;
    this.#options = options;
    keyring.registerReencryptor(this);
  }

  /** The service's clock (the routes' recent-login check reads the same time). */
  now(): Date {
    return this.#clock.now();
  }

  // --- policy ---

  async policy(tenantId: string): Promise<{ mode: MfaMode; updatedAt: string | null }> {
    const row = await this.#db.withTenant(tenantId, (tx) => findLoginPolicy(tx, tenantId));
    return { mode: row?.mfa_mode ?? 'optional', updatedAt: row?.updated_at.toISOString() ?? null };
  }

  async setPolicy(tenantId: string, mode: MfaMode): Promise<{ mode: MfaMode; updatedAt: string }> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const previous = (await findLoginPolicy(tx, tenantId))?.mfa_mode ?? 'optional';
      const row = await upsertLoginPolicy(tx, tenantId, { mfaMode: mode }, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'mfa-policy.update', detail: { mode, previousMode: previous } });
      return { mode: row.mfa_mode, updatedAt: row.updated_at.toISOString() };
    });
  }

  // --- the login's second step ---

  /**
   * In the transaction of a login whose password was right: the challenge the login answers with, or
   * undefined when no factor is due (policy off; optional and nothing enrolled; admins-only and not an admin).
   * A required factor that is not enrolled yet gives an `enroll` challenge: the login finishes by enrolling one.
   */
  async challengeAfterPassword(tx: Queryable, tenantId: string, userId: string): Promise<MfaChallenge | undefined> {
    const now = this.#clock.now();
    const [policy, factors, recoveryCodes] = await Promise.all([findLoginPolicy(tx, tenantId), listFactors(tx, tenantId, userId), unusedRecoveryCodes(tx, tenantId, userId)]);
    const mode = policy?.mfa_mode ?? 'optional';
    if (mode === 'off') return undefined;
    const methods = methodsOf(factors, recoveryCodes);
    const enrolled = factors.some((factor) => factor.status === 'active');
    let required = mode === 'required';
    if (mode === 'required_for_admins') {
      const permissions = await this.#access.permissionsIn(tx, tenantId, userId);
      required = [...permissions].some((permission) => administrativePermissions.has(permission));
    }
    if (!enrolled && !required) return undefined;
    const purpose = enrolled ? 'verify' : 'enroll';
    const token = `bwm_${tenantId}${randomBytes(32).toString('base64url')}`;
    const expiresAt = new Date(now.getTime() + this.#options.challengeTtlMs);
    const inserted = await insertChallenge(tx, { tenantId, id: newId(), userId, tokenHash: sha256(token), purpose, webauthnChallenge: null, expiresAt, now });
    if (!inserted) throw new BulwarkError('conflict', { detail: 'challenge id collision' });
    return { challengeToken: token, purpose, methods: purpose === 'verify' ? methods : ['totp', 'webauthn'], expiresAt: expiresAt.toISOString() };
  }

  /**
   * Finishes a login with its second factor (or, for an `enroll` challenge, with the first factor's
   * proof, which activates it). `onSuccess` starts the session in the same transaction. The answer carries
   * fresh recovery codes when this login enrolled the user's first factor.
   */
  async completeLogin<T>(
    challengeToken: string,
    proof: MfaProof,
    source: string,
    onSuccess: (tx: Queryable, tenantId: string, userId: string) => Promise<T>,
    sessionOf: (result: T) => string,
  ): Promise<{ result: T; recoveryCodes: string[] | undefined }> {
    const tenantId = challengeTenant(challengeToken);
    if (tenantId === undefined) throw invalidChallenge();
    const tokenHash = sha256(challengeToken);
    // The challenge names the user; a bad token costs nothing of the user's throttle.
    const userId = await this.#db.withTenant(tenantId, async (tx) => {
      const challenge = await lockChallenge(tx, tenantId, tokenHash);
      return challenge === undefined || !this.#live(challenge) ? undefined : challenge.user_id;
    });
    if (userId === undefined) throw invalidChallenge();
    // The proof is checked in the transaction that takes the challenge (a WebAuthn ceremony's once, whatever the outcome).
    let recoveryCodes: string[] | undefined;
    const result = await this.#login.secondFactor(
        tenantId,
        { accountId: userId, source, method: proof.method },
        {
          check: async (tx, keys) => {
            const [challenge, active] = await Promise.all([lockChallenge(tx, tenantId, tokenHash), userIsActive(tx, tenantId, userId)]);
            if (challenge === undefined || !this.#live(challenge) || challenge.user_id !== userId) throw invalidChallenge();
            // Disabled after the password was checked (its sessions were ended then): no new one starts.
            if (!active) throw new BulwarkError('account_disabled');
            const proven = await this.#prove(tx, keys, tenantId, userId, challenge, proof);
            if (!proven.ok) {
              const attempts = challenge.attempts + 1;
              // The last allowed attempt spends the challenge: the next try must start from the password.
              await updateChallenge(tx, tenantId, challenge.id, { attempts, ...(attempts >= this.#options.challengeMaxAttempts ? { consumedAt: this.#clock.now() } : {}) });
              return false;
            }
            await updateChallenge(tx, tenantId, challenge.id, { consumedAt: this.#clock.now() });
            if (proven.enrolledFirst) recoveryCodes = await this.#issueRecoveryCodes(tx, keys, tenantId, userId);
            return true;
          },
          onSuccess: (tx) => onSuccess(tx, tenantId, userId),
          sessionOf,
        },
      )
      .catch(async (error: unknown) => {
        // Disabled while the challenge was open: refused like the password path refuses it, and audited.
        if (error instanceof BulwarkError && error.code === 'account_disabled') {
          await this.#audit.recordAlone({ tenantId }, {
            action: 'auth.mfa',
            outcome: 'failure',
            actor: { kind: 'user', id: userId },
            target: { type: 'user', id: userId },
            detail: { method: proof.method, reason: 'account_disabled' },
          });
        }
        throw error;
      });
    return { result, recoveryCodes };
  }

  /** An `enroll` challenge's TOTP seed: the login shows it, then finishes with a code of it. */
  async startTotpForChallenge(challengeToken: string, name: string | undefined): Promise<{ factorId: string; secret: string; otpauthUri: string }> {
    const { tenantId, challenge } = await this.#challengeFor(challengeToken, 'enroll');
    return this.#startTotp(tenantId, challenge.user_id, name);
  }

  /**
   * The WebAuthn options of a login's challenge: creation options for an `enroll` challenge, request options
   * (the user's passkeys) for a `verify` one. The ceremony's challenge is kept on the login's challenge.
   */
  async webauthnOptionsForChallenge(challengeToken: string): Promise<{ options: Record<string, unknown> }> {
    const { tenantId, challenge } = await this.#challengeFor(challengeToken, undefined);
    const factors = await this.#db.withTenant(tenantId, (tx) => listFactors(tx, tenantId, challenge.user_id));
    const passkeys = factors.filter((factor) => factor.kind === 'webauthn' && factor.status === 'active').map(storedCredential);
    if (challenge.purpose === 'verify' && passkeys.length === 0) throw new BulwarkError('validation_failed', { message: 'This account has no passkey; use another method.' });
    const ceremony =
      challenge.purpose === 'enroll'
        ? await registrationOptions(this.#options.relyingParty, await this.#webauthnUser(tenantId, challenge.user_id), passkeys)
        : await authenticationOptions(this.#options.relyingParty, passkeys);
    await this.#db.withTenant(tenantId, async (tx) => {
      const locked = await lockChallenge(tx, tenantId, sha256(challengeToken));
      if (locked === undefined || !this.#live(locked)) throw invalidChallenge();
      await updateChallenge(tx, tenantId, locked.id, { webauthnChallenge: ceremony.challenge });
    });
    return { options: ceremony.options as unknown as Record<string, unknown> };
  }

  // --- self-service (a logged-in user's own factors) ---

  async overview(tenantId: string, userId: string): Promise<{ policy: MfaMode; factors: MfaFactor[]; recoveryCodesLeft: number }> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const [policy, factors, left] = await Promise.all([findLoginPolicy(tx, tenantId), listFactors(tx, tenantId, userId), unusedRecoveryCodes(tx, tenantId, userId)]);
      return { policy: policy?.mfa_mode ?? 'optional', factors: factors.map(toFactor), recoveryCodesLeft: left };
    });
  }

  async startTotp(tenantId: string, userId: string, name: string | undefined): Promise<{ factorId: string; secret: string; otpauthUri: string }> {
    return this.#startTotp(tenantId, userId, name);
  }

  /** Proves a pending TOTP seed with a code; the first active factor comes with recovery codes (shown once). */
  async confirmTotp(tenantId: string, userId: string, factorId: string, code: string): Promise<{ factor: MfaFactor; recoveryCodes: string[] | undefined }> {
    // A seed started before the policy went off is not activated under it.
    await this.#assertEnrolmentAllowed(tenantId);
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const factor = await findFactor(tx, tenantId, userId, factorId);
        if (factor?.kind !== 'totp') throw notFound();
        if (factor.status === 'active') throw new BulwarkError('conflict', { message: 'This factor is already active.' });
        const firstFactor = !(await listFactors(tx, tenantId, userId)).some((other) => other.status === 'active');
        if (!(await this.#acceptTotp(tx, keys, tenantId, factor, code, true))) throw new BulwarkError('invalid_mfa_code');
        await this.#audit.record(tx, { tenantId }, { action: 'mfa.factor.activate', target: { type: 'user', id: userId }, detail: { factorId, kind: 'totp' } });
        const recoveryCodes = firstFactor ? await this.#issueRecoveryCodes(tx, keys, tenantId, userId) : undefined;
        const activated = await findFactor(tx, tenantId, userId, factorId);
        return { factor: toFactor(activated ?? factor), recoveryCodes };
      }),
    );
  }

  async webauthnRegistrationOptions(tenantId: string, userId: string): Promise<{ options: Record<string, unknown> }> {
    await this.#assertEnrolmentAllowed(tenantId);
    const factors = await this.#db.withTenant(tenantId, (tx) => listFactors(tx, tenantId, userId));
    const passkeys = factors.filter((factor) => factor.kind === 'webauthn').map(storedCredential);
    const ceremony = await registrationOptions(this.#options.relyingParty, await this.#webauthnUser(tenantId, userId), passkeys);
    const now = this.#clock.now();
    await this.#db.withTenant(tenantId, async (tx) => {
      const id = newId();
      // A ceremony row of its own (no login challenge here); its token is never given out.
      await insertChallenge(tx, {
        tenantId,
        id,
        userId,
        tokenHash: randomBytes(32),
        purpose: 'enroll',
        webauthnChallenge: ceremony.challenge,
        expiresAt: new Date(now.getTime() + this.#options.challengeTtlMs),
        now,
      });
    });
    return { options: ceremony.options as unknown as Record<string, unknown> };
  }

  async registerWebauthn(tenantId: string, userId: string, credential: unknown, name: string | undefined): Promise<{ factor: MfaFactor; recoveryCodes: string[] | undefined }> {
    await this.#assertEnrolmentAllowed(tenantId);
    const challenge = await this.#db.withTenant(tenantId, async (tx) => {
      const ceremony = await lockRegistrationCeremony(tx, tenantId, userId, this.#clock.now());
      if (ceremony === undefined) return undefined;
      await updateChallenge(tx, tenantId, ceremony.id, { webauthnChallenge: null, consumedAt: this.#clock.now() });
      return ceremony.webauthn_challenge;
    });
    if (challenge === null || challenge === undefined) throw new BulwarkError('validation_failed', { message: 'Ask for registration options first; they are single-use and expire.' });
    const stored = await this.#verifyRegistration(credential, challenge);
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const firstFactor = !(await listFactors(tx, tenantId, userId)).some((other) => other.status === 'active');
        const factor = await this.#addPasskey(tx, tenantId, userId, stored, name);
        const recoveryCodes = firstFactor ? await this.#issueRecoveryCodes(tx, keys, tenantId, userId) : undefined;
        return { factor, recoveryCodes };
      }),
    );
  }

  /**
   * Removes one of the user's own factors. Under a policy that requires MFA of this user, the last active
   * factor stays (409): removing it would lock the account out at its next login.
   */
  async removeFactor(tenantId: string, userId: string, factorId: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const factor = await findFactor(tx, tenantId, userId, factorId);
      if (factor === undefined) throw notFound();
      const others = (await listFactors(tx, tenantId, userId)).filter((other) => other.status === 'active' && other.id !== factorId);
      if (factor.status === 'active' && others.length === 0 && (await this.#requiredFor(tx, tenantId, userId))) {
        throw new BulwarkError('conflict', { message: "The tenant's MFA policy requires a second factor: enrol another before removing this one." });
      }
      await deleteFactor(tx, tenantId, userId, factorId);
      // Recovery codes belong to having a factor: without one they would be a password of their own.
      if (others.length === 0) await replaceRecoveryCodes(tx, tenantId, userId, [], this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'mfa.factor.remove', target: { type: 'user', id: userId }, detail: { factorId, kind: factor.kind } });
    });
  }

  /** New recovery codes (the old ones stop working), shown once. Needs an active factor. */
  async regenerateRecoveryCodes(tenantId: string, userId: string): Promise<{ recoveryCodes: string[] }> {
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        if (!(await listFactors(tx, tenantId, userId)).some((factor) => factor.status === 'active')) {
          throw new BulwarkError('conflict', { message: 'Recovery codes need an active second factor.' });
        }
        return { recoveryCodes: await this.#issueRecoveryCodes(tx, keys, tenantId, userId) };
      }),
    );
  }

  /** An admin's reset after a lost device: every factor and recovery code of the user goes. */
  async reset(tenantId: string, userId: string): Promise<{ removed: number }> {
    await this.#users.get(tenantId, userId);
    return this.#db.withTenant(tenantId, async (tx) => {
      const removed = await deleteAllFactors(tx, tenantId, userId);
      await this.#audit.record(tx, { tenantId }, { action: 'mfa.reset', target: { type: 'user', id: userId }, detail: { factorsRemoved: removed } });
      return { removed };
    });
  }

  // --- Reencryptor: TOTP seeds follow the tenant's key rotation ---

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countFactorsByKeyVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleTotpSeeds(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const context = seedContext(tenantId, row.id);
        await resealTotpSeed(tx, tenantId, row.id, keys.seal(keys.open(row.secret, context, 'data_integrity_failed'), context));
      }
      return rows.length;
    });
  }

  // --- steps ---

  #live(challenge: { expires_at: Date; consumed_at: Date | null; attempts: number }): boolean {
    return challenge.consumed_at === null && challenge.expires_at.getTime() > this.#clock.now().getTime() && challenge.attempts < this.#options.challengeMaxAttempts;
  }

  async #challengeFor(challengeToken: string, purpose: 'verify' | 'enroll' | undefined) {
    const tenantId = challengeTenant(challengeToken);
    if (tenantId === undefined) throw invalidChallenge();
    const challenge = await this.#db.withTenant(tenantId, (tx) => lockChallenge(tx, tenantId, sha256(challengeToken)));
    if (challenge === undefined || !this.#live(challenge)) throw invalidChallenge();
    if (purpose !== undefined && challenge.purpose !== purpose) throw new BulwarkError('validation_failed', { message: `This challenge is for ${challenge.purpose === 'verify' ? 'verifying a factor' : 'enrolling a factor'}.` });
    return { tenantId, challenge };
  }

  async #assertEnrolmentAllowed(tenantId: string): Promise<void> {
    if ((await this.policy(tenantId)).mode === 'off') throw new BulwarkError('mfa_disabled');
  }

  async #requiredFor(tx: Queryable, tenantId: string, userId: string): Promise<boolean> {
    const mode = (await findLoginPolicy(tx, tenantId))?.mfa_mode ?? 'optional';
    if (mode === 'required') return true;
    if (mode !== 'required_for_admins') return false;
    return [...(await this.#access.permissionsIn(tx, tenantId, userId))].some((permission) => administrativePermissions.has(permission));
  }

  async #startTotp(tenantId: string, userId: string, name: string | undefined): Promise<{ factorId: string; secret: string; otpauthUri: string }> {
    await this.#assertEnrolmentAllowed(tenantId);
    const seed = newTotpSeed();
    const label = await this.#webauthnUser(tenantId, userId);
    const factorId = newId();
    await this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        await deletePendingTotp(tx, tenantId, userId);
        const sealed = keys.seal(seed, seedContext(tenantId, factorId));
        const inserted = await insertFactor(tx, { tenantId, id: factorId, userId, kind: 'totp', name: name ?? 'Authenticator app', status: 'pending', secret: sealed, now: this.#clock.now() });
        if (!inserted) throw new BulwarkError('conflict', { detail: 'factor id collision' });
        await this.#audit.record(tx, { tenantId }, { action: 'mfa.factor.add', target: { type: 'user', id: userId }, detail: { factorId, kind: 'totp', status: 'pending' } });
      }),
    );
    return { factorId, ...totpProvisioning(seed, this.#options.issuer, label.name) };
  }

  /** Checks a code against the factor's seed and takes its time step (once); `activate` finishes enrolment. */
  async #acceptTotp(tx: Queryable, keys: TenantKeys, tenantId: string, factor: FactorRow, code: string, activate: boolean): Promise<boolean> {
    if (factor.secret === null) return false;
    const seed = keys.open(factor.secret, seedContext(tenantId, factor.id), 'data_integrity_failed');
    const step = acceptedTotpStep(seed, code, this.#clock.now(), factor.last_used_step);
    return step !== undefined && (await acceptTotpStep(tx, tenantId, factor.id, step, this.#clock.now(), activate));
  }

  async #prove(
    tx: Queryable,
    keys: TenantKeys,
    tenantId: string,
    userId: string,
    challenge: { id: string; purpose: 'verify' | 'enroll'; webauthn_challenge: string | null },
    proof: MfaProof,
  ): Promise<{ ok: boolean; enrolledFirst: boolean }> {
    const factors = await listFactors(tx, tenantId, userId);
    const enroll = challenge.purpose === 'enroll';
    switch (proof.method) {
      case 'totp': {
        const candidates = factors.filter((factor) => factor.kind === 'totp' && factor.status === (enroll ? 'pending' : 'active'));
        for (const factor of candidates) {
          if (await this.#acceptTotp(tx, keys, tenantId, factor, proof.code, enroll)) {
            if (enroll) await this.#audit.record(tx, { tenantId }, { action: 'mfa.factor.activate', target: { type: 'user', id: userId }, detail: { factorId: factor.id, kind: 'totp' } });
            return { ok: true, enrolledFirst: enroll };
          }
        }
        return { ok: false, enrolledFirst: false };
      }
      case 'recovery-code': {
        const normalized = normalizeRecoveryCode(proof.code);
        if (enroll || normalized === undefined) return { ok: false, enrolledFirst: false };
        return { ok: await spendRecoveryCode(tx, tenantId, userId, recoveryCodeHash(keys, userId, normalized), this.#clock.now()), enrolledFirst: false };
      }
      case 'webauthn': {
        const expected = challenge.webauthn_challenge;
        // Single use: whatever the outcome, this ceremony's challenge is gone.
        await updateChallenge(tx, tenantId, challenge.id, { webauthnChallenge: null });
        if (expected === null) return { ok: false, enrolledFirst: false };
        if (enroll) {
          const stored = await this.#verifyRegistration(proof.credential, expected).catch((error: unknown) => {
            if (error instanceof BulwarkError) return undefined;
            throw error;
          });
          if (stored === undefined) return { ok: false, enrolledFirst: false };
          await this.#addPasskey(tx, tenantId, userId, stored, undefined);
          return { ok: true, enrolledFirst: true };
        }
        const credentialId = credentialIdOf(proof.credential);
        const factor = factors.find((candidate) => candidate.kind === 'webauthn' && candidate.status === 'active' && candidate.credential_id === credentialId);
        if (factor === undefined) return { ok: false, enrolledFirst: false };
        try {
          const stored = storedCredential(factor);
          const { newCounter } = await verifyAuthentication(this.#options.relyingParty, proof.credential, expected, stored, userId);
          return { ok: await advanceSignCount(tx, tenantId, factor.id, stored.counter, newCounter, this.#clock.now()), enrolledFirst: false };
        } catch (error) {
          if (error instanceof WebAuthnRefusal) return { ok: false, enrolledFirst: false };
          throw error;
        }
      }
    }
  }

  async #verifyRegistration(credential: unknown, challenge: string): Promise<StoredCredential> {
    try {
      return await verifyRegistration(this.#options.relyingParty, credential, challenge);
    } catch (error) {
      if (error instanceof WebAuthnRefusal) throw new BulwarkError('invalid_mfa_code', { message: 'The passkey registration was refused.', detail: error.reason });
      throw error;
    }
  }

  async #addPasskey(tx: Queryable, tenantId: string, userId: string, stored: StoredCredential, name: string | undefined): Promise<MfaFactor> {
    const factorId = newId();
    const now = this.#clock.now();
    const inserted = await insertFactor(tx, {
      tenantId,
      id: factorId,
      userId,
      kind: 'webauthn',
      name: name ?? 'Passkey',
      status: 'active',
      webauthn: { credentialId: stored.credentialId, publicKey: stored.publicKey, signCount: stored.counter, transports: stored.transports },
      now,
    });
    if (!inserted) throw new BulwarkError('conflict', { message: 'This passkey is already registered.' });
    await this.#audit.record(tx, { tenantId }, { action: 'mfa.factor.add', target: { type: 'user', id: userId }, detail: { factorId, kind: 'webauthn', status: 'active' } });
    return { id: factorId, kind: 'webauthn', name: name ?? 'Passkey', status: 'active', createdAt: now.toISOString(), lastUsedAt: null };
  }

  async #issueRecoveryCodes(tx: Queryable, keys: TenantKeys, tenantId: string, userId: string): Promise<string[]> {
    const codes = newRecoveryCodes();
    const hashes = codes.map((code) => recoveryCodeHash(keys, userId, normalizeRecoveryCode(code) ?? code));
    await replaceRecoveryCodes(tx, tenantId, userId, hashes, this.#clock.now());
    await this.#audit.record(tx, { tenantId }, { action: 'mfa.recovery-codes.generate', target: { type: 'user', id: userId }, detail: { count: codes.length } });
    return codes;
  }

  /** WebAuthn's user handle is the user id; the name shown is the e-mail address. */
  async #webauthnUser(tenantId: string, userId: string): Promise<{ id: string; name: string; displayName: string }> {
    const email = await this.#users.emailOf(tenantId, userId);
    return { id: userId, name: email, displayName: email };
  }
}

/** Keyed per user: the same code string of two users hashes apart. */
function recoveryCodeHash(keys: TenantKeys, userId: string, normalizedCode: string): Buffer {
  return keys.lookupHash(`recovery-code:${userId}:${normalizedCode}`);
}
