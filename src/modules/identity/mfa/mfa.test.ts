import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { Secret } from 'otpauth';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { storedDataContains } from '../../../testing/at-rest.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import type { AuditItem } from '../../../testing/login-state.ts';
import { assertNoLeak, assertProblem } from '../../../testing/security-suite.ts';
import { SoftAuthenticator } from '../../../testing/soft-authenticator.ts';
import { totpCode } from './totp.ts';

interface Challenge {
  mfaRequired: true;
  challengeToken: string;
  purpose: 'verify' | 'enroll';
  methods: string[];
  expiresAt: string;
}

interface Tokens {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  recoveryCodes?: string[];
}

interface Factor {
  id: string;
  kind: 'totp' | 'webauthn';
  name: string;
  status: 'pending' | 'active';
  lastUsedAt: string | null;
}

interface Overview {
  policy: string;
  factors: Factor[];
  recoveryCodesLeft: number;
}

// The relying party comes from the public URL (no BULWARK_WEBAUTHN_RP_ID or _ORIGINS set).
const origin = 'https://auth.bulwark.test';
const rpId = 'auth.bulwark.test';
const password = 'a long and unusual passphrase 9!';
const stepMs = 30_000;
const recoveryCodeShape = /^[a-hj-km-np-z2-9]{5}-[a-hj-km-np-z2-9]{5}$/;

/** Real time plus an offset the test moves (as movableClock), which can also stand still: a throttle delay of 1 s then outlasts a slow machine. */
function stoppableClock() {
  let offset = 0;
  let stoppedAt: number | undefined;
  return {
    now: () => new Date(stoppedAt ?? Date.now() + offset),
    advance: (ms: number) => {
      if (stoppedAt === undefined) offset += ms;
      else stoppedAt += ms;
    },
    stop: () => {
      stoppedAt = Date.now() + offset;
    },
    start: () => {
      if (stoppedAt !== undefined) offset = stoppedAt - Date.now();
      stoppedAt = undefined;
    },
  };
}

for (const engine of engines) {
  describe(`mfa over HTTP [${engine}]`, { skip: engineSkip(engine) }, () => {
    let test: TestApp;
    let clock: ReturnType<typeof stoppableClock>;
    let pgliteDir: string;
    let tenantId: string;
    let apiKey: string;
    let other: { tenantId: string; apiKey: string };
    // What the at-rest test searches the stored data for.
    const markers: string[] = [];
    const seeds: Buffer[] = [];

    before(async () => {
      pgliteDir = join(mkdtempSync(join(tmpdir(), 'bulwark-mfa-')), 'pglite');
      clock = stoppableClock();
      // No auth cache: a reset or a policy change shows at once. Every request comes from one address, so the
      // per-source lockout is lifted; the per-account one keeps its default (5 failures, 15 minutes).
      test = await createTestApp(engine, { clock, pgliteDir, config: { authCacheTtlMs: '0', loginSourceMaxFailures: '10000', publicUrl: origin } });
      ({ tenantId, apiKey } = await test.tenantWithKey('Second factors'));
      other = await test.tenantWithKey('Other');
    });
    after(() => test.close());

    /** Moves the clock to 1 s into the next TOTP step, so what follows stays inside one step. */
    const nextStep = () => clock.advance(stepMs - (clock.now().getTime() % stepMs) + 1000);
    const codeAt = (seed: Buffer, stepsAway = 0) => totpCode(seed, new Date(clock.now().getTime() + stepsAway * stepMs));

    const newUser = async (label: string, roles: string[] = []) => {
      const email = `${label}-${randomBytes(4).toString('hex')}@example.org`;
      const created = await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email, password } });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      if (roles.length > 0) assert.equal((await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/users/${id}/roles`, token: apiKey, body: { roles } })).statusCode, 200);
      return { id, email };
    };
    const login = (email: string, secret = password) => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password: secret } });
    const challengeOf = async (email: string, purpose: Challenge['purpose'] = 'verify') => {
      const response = await login(email);
      assert.equal(response.statusCode, 200, response.body);
      const challenge = response.json<Challenge>();
      assert.equal(challenge.mfaRequired, true, 'the login asks for a second factor');
      assert.equal(challenge.purpose, purpose);
      assert.ok(!('accessToken' in challenge), 'no token before the second factor');
      return challenge;
    };
    const tokensOf = async (email: string) => {
      const response = await login(email);
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json<Tokens & { mfaRequired?: boolean }>();
      assert.equal(tokens.mfaRequired, undefined, 'no second factor asked for');
      return tokens;
    };
    const finish = (challengeToken: string, proof: Record<string, unknown>) => test.call({ method: 'POST', url: '/v1/auth/mfa', body: { challengeToken, ...proof } });
    const finishOk = async (challengeToken: string, proof: Record<string, unknown>) => {
      const response = await finish(challengeToken, proof);
      assert.equal(response.statusCode, 200, response.body);
      return response.json<Tokens>();
    };
    const me = (token: string) => test.call({ method: 'GET', url: '/v1/me', token });
    const overview = async (token: string) => {
      const response = await test.call({ method: 'GET', url: '/v1/me/mfa', token });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<Overview>();
    };
    const seedOf = (base32: string) => Buffer.from(Secret.fromBase32(base32).bytes);
    const setPolicy = async (mode: string) => {
      const response = await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/mfa-policy`, token: apiKey, body: { mode } });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.json<{ mode: string }>().mode, mode);
    };
    /** A user with an active TOTP factor, enrolled through the self-service routes; the clock is past its step. */
    const withTotp = async (label: string, roles: string[] = []) => {
      const user = await newUser(label, roles);
      const token = (await tokensOf(user.email)).accessToken;
      const started = await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token, body: {} });
      assert.equal(started.statusCode, 201, started.body);
      const { factorId, secret } = started.json<{ factorId: string; secret: string }>();
      const seed = seedOf(secret);
      nextStep();
      const confirmed = await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${factorId}/verify`, token, body: { code: codeAt(seed) } });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      nextStep();
      return { ...user, token, factorId, seed, recoveryCodes: confirmed.json<{ recoveryCodes: string[] }>().recoveryCodes };
    };
    const audit = async (query: string) => {
      const response = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=500&${query}`, token: apiKey });
      assert.equal(response.statusCode, 200, response.body);
      return response.json<{ items: AuditItem[] }>().items;
    };

    it('TOTP: enrol and confirm (recovery codes once), then every login asks for a code; a code works once, ±1 step', async () => {
      const user = await newUser('totp');
      const token = (await tokensOf(user.email)).accessToken;
      assert.deepEqual(await overview(token), { policy: 'optional', factors: [], recoveryCodesLeft: 0 });

      const started = await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token, body: { name: 'Phone' } });
      assert.equal(started.statusCode, 201, started.body);
      const { factorId, secret, otpauthUri } = started.json<{ factorId: string; secret: string; otpauthUri: string }>();
      assert.match(secret, /^[A-Z2-7]{32}$/, '160 bits in base32');
      assert.ok(otpauthUri.startsWith('otpauth://totp/Bulwark:') && otpauthUri.includes(`secret=${secret}`), otpauthUri);
      const seed = seedOf(secret);
      seeds.push(seed);
      markers.push(secret);

      // Pending until proven: a wrong code leaves it pending, and a pending seed is not asked for at login.
      nextStep();
      const wrongCode = codeAt(seed, 5);
      assertProblem(await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${factorId}/verify`, token, body: { code: wrongCode } }), 401, 'invalid_mfa_code');
      assert.deepEqual((await overview(token)).factors.map((factor) => [factor.id, factor.name, factor.status]), [[factorId, 'Phone', 'pending']]);
      await tokensOf(user.email);

      const confirmed = await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${factorId}/verify`, token, body: { code: codeAt(seed) } });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const { factor, recoveryCodes } = confirmed.json<{ factor: Factor; recoveryCodes: string[] }>();
      assert.deepEqual([factor.id, factor.kind, factor.status], [factorId, 'totp', 'active']);
      assert.equal(recoveryCodes.length, 10);
      assert.equal(new Set(recoveryCodes).size, 10);
      for (const code of recoveryCodes) assert.match(code, recoveryCodeShape);
      markers.push(...recoveryCodes);
      assertProblem(await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${factorId}/verify`, token, body: { code: codeAt(seed, 1) } }), 409, 'conflict');
      assert.equal((await overview(token)).recoveryCodesLeft, 10);

      // The next password login answers a challenge, not tokens.
      nextStep();
      const before = clock.now().getTime();
      const challenge = await challengeOf(user.email);
      const after = clock.now().getTime();
      assert.deepEqual(challenge.methods, ['totp', 'recovery-code']);
      assert.match(challenge.challengeToken, new RegExp(`^bwm_${tenantId}[A-Za-z0-9_-]{43}$`));
      const expiresAt = Date.parse(challenge.expiresAt);
      assert.ok(expiresAt >= before + 300_000 && expiresAt <= after + 300_000, 'the challenge lives 5 minutes');
      markers.push(challenge.challengeToken);

      const code = codeAt(seed);
      const tokens = await finishOk(challenge.challengeToken, { method: 'totp', code });
      assert.equal(tokens.recoveryCodes, undefined, 'recovery codes come with an enrolment only');
      const profile = await me(tokens.accessToken);
      assert.equal(profile.statusCode, 200);
      assert.equal(profile.json<{ id: string }>().id, user.id);
      assert.equal((await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } })).statusCode, 200, 'the session refreshes');
      assertProblem(await finish(challenge.challengeToken, { method: 'totp', code }), 401, 'mfa_challenge_invalid', [code]);

      // The same code on a new challenge, same step: refused, and that challenge still takes a good code.
      const replay = await challengeOf(user.email);
      assertProblem(await finish(replay.challengeToken, { method: 'totp', code }), 401, 'invalid_mfa_code', [code]);

      // The previous step's code (a slow clock) is accepted, and so is the next step's (a fast one).
      nextStep();
      nextStep();
      await finishOk(replay.challengeToken, { method: 'totp', code: codeAt(seed, -1) });
      nextStep();
      nextStep();
      const drift = await challengeOf(user.email);
      await finishOk(drift.challengeToken, { method: 'totp', code: codeAt(seed, 1) });

      // Two steps away, ahead or behind (behind: still later than the last accepted step), is refused.
      nextStep();
      nextStep();
      nextStep();
      const far = await challengeOf(user.email);
      assertProblem(await finish(far.challengeToken, { method: 'totp', code: codeAt(seed, 2) }), 401, 'invalid_mfa_code');
      assertProblem(await finish(far.challengeToken, { method: 'totp', code: codeAt(seed, -2) }), 401, 'invalid_mfa_code');
      // Two failures do not spend the challenge.
      const last = await finishOk(far.challengeToken, { method: 'totp', code: codeAt(seed) });
      assert.equal((await me(last.accessToken)).statusCode, 200);
      assert.ok((await overview(last.accessToken)).factors[0]?.lastUsedAt !== null);

      // Two logins racing with one code: exactly one wins (the step is taken by compare-and-set).
      nextStep();
      const racers = await Promise.all([challengeOf(user.email), challengeOf(user.email), challengeOf(user.email)]);
      const shared = codeAt(seed);
      const raced = await Promise.all(racers.map((racer) => finish(racer.challengeToken, { method: 'totp', code: shared })));
      assert.deepEqual(raced.map((response) => response.statusCode).sort(), [200, 401, 401]);
    });

    it('recovery codes: each logs in once, in any case and with or without the hyphen; regenerating voids the old set', async () => {
      const user = await withTotp('recovery');
      const [first = '', second = '', third = ''] = user.recoveryCodes;
      const tokens = await finishOk((await challengeOf(user.email)).challengeToken, { method: 'recovery-code', code: first });
      assert.equal((await me(tokens.accessToken)).statusCode, 200);
      assert.equal((await overview(tokens.accessToken)).recoveryCodesLeft, 9);

      const again = await challengeOf(user.email);
      assertProblem(await finish(again.challengeToken, { method: 'recovery-code', code: first }), 401, 'invalid_mfa_code', [first]);
      await finishOk(again.challengeToken, { method: 'recovery-code', code: ` ${second.replace('-', '').toUpperCase()} ` });
      assert.equal((await overview(tokens.accessToken)).recoveryCodesLeft, 8);

      // Another user's code is not this user's, and a TOTP code is not a recovery code.
      const other = await withTotp('recovery-other');
      const mixed = await challengeOf(user.email);
      assertProblem(await finish(mixed.challengeToken, { method: 'recovery-code', code: other.recoveryCodes[0] ?? '' }), 401, 'invalid_mfa_code');
      assertProblem(await finish(mixed.challengeToken, { method: 'recovery-code', code: codeAt(user.seed) }), 401, 'invalid_mfa_code');
      await finishOk(mixed.challengeToken, { method: 'totp', code: codeAt(user.seed) });

      const regenerated = await test.call({ method: 'POST', url: '/v1/me/mfa/recovery-codes', token: tokens.accessToken });
      assert.equal(regenerated.statusCode, 200, regenerated.body);
      const fresh = regenerated.json<{ recoveryCodes: string[] }>().recoveryCodes;
      assert.equal(fresh.length, 10);
      assert.ok(!fresh.some((code) => user.recoveryCodes.includes(code)));
      assert.equal((await overview(tokens.accessToken)).recoveryCodesLeft, 10);
      const voided = await challengeOf(user.email);
      assertProblem(await finish(voided.challengeToken, { method: 'recovery-code', code: third }), 401, 'invalid_mfa_code', [third]);
      await finishOk(voided.challengeToken, { method: 'recovery-code', code: fresh[0] ?? '' });

      // Two logins racing with one code: exactly one spends it.
      const racers = await Promise.all([challengeOf(user.email), challengeOf(user.email)]);
      const raced = await Promise.all(racers.map((racer) => finish(racer.challengeToken, { method: 'recovery-code', code: fresh[1] ?? '' })));
      assert.deepEqual(raced.map((response) => response.statusCode).sort(), [200, 401]);

      // Without a factor there are no recovery codes to make.
      const plain = await newUser('recovery-none');
      assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/recovery-codes', token: (await tokensOf(plain.email)).accessToken }), 409, 'conflict');
    });

    it('WebAuthn: a passkey registers and logs in; a replayed, unrequested or wrong-origin assertion is refused', async () => {
      const user = await newUser('passkey');
      const token = (await tokensOf(user.email)).accessToken;
      const key = new SoftAuthenticator({ origin, rpId });
      const registrationOptions = async () => {
        const response = await test.call({ method: 'POST', url: '/v1/me/mfa/webauthn/registration-options', token });
        assert.equal(response.statusCode, 200, response.body);
        return response.json<{ options: PublicKeyCredentialCreationOptionsJSON }>().options;
      };
      const register = (credential: unknown) => test.call({ method: 'POST', url: '/v1/me/mfa/webauthn', token, body: { credential, name: 'Security key' } });

      // Another origin's registration is refused, and so is a second use of the options.
      const stranger = new SoftAuthenticator({ origin, rpId });
      assertProblem(await register(stranger.create(await registrationOptions(), { origin: 'https://evil.test' })), 401, 'invalid_mfa_code');
      const options = await registrationOptions();
      assert.deepEqual([options.rp.id, options.user.name], [rpId, user.email]);
      const registration = key.create(options);
      const registered = await register(registration);
      assert.equal(registered.statusCode, 201, registered.body);
      const { factor, recoveryCodes } = registered.json<{ factor: Factor; recoveryCodes: string[] }>();
      assert.deepEqual([factor.kind, factor.name, factor.status], ['webauthn', 'Security key', 'active']);
      assert.equal(recoveryCodes.length, 10, 'the first factor comes with recovery codes');
      assertProblem(await register(registration), 400, 'validation_failed');
      assert.deepEqual((await overview(token)).factors.map((each) => each.kind), ['webauthn']);

      const challenge = await challengeOf(user.email);
      assert.deepEqual(challenge.methods, ['webauthn', 'recovery-code']);
      const requestOptions = async (challengeToken: string) => {
        const response = await test.call({ method: 'POST', url: '/v1/auth/mfa/webauthn/options', body: { challengeToken } });
        assert.equal(response.statusCode, 200, response.body);
        return response.json<{ options: PublicKeyCredentialRequestOptionsJSON }>().options;
      };
      const request = await requestOptions(challenge.challengeToken);
      assert.equal(request.rpId, rpId);
      assert.deepEqual(request.allowCredentials?.map((descriptor) => descriptor.id), [key.credentialId]);
      const assertion = key.get(request);

      // An assertion taken to another challenge (one that issued no options) is refused; the one it answers takes it.
      const unrequested = await challengeOf(user.email);
      assertProblem(await finish(unrequested.challengeToken, { method: 'webauthn', credential: assertion }), 401, 'invalid_mfa_code');
      const tokens = await finishOk(challenge.challengeToken, { method: 'webauthn', credential: assertion });
      assert.equal((await me(tokens.accessToken)).statusCode, 200);

      // Replay: the same assertion on the options of a new challenge.
      const next = await challengeOf(user.email);
      const spent = await requestOptions(next.challengeToken);
      assertProblem(await finish(next.challengeToken, { method: 'webauthn', credential: assertion }), 401, 'invalid_mfa_code');
      // Each failure spends the ceremony: a good assertion of those options now needs new ones.
      assertProblem(await finish(next.challengeToken, { method: 'webauthn', credential: key.get(spent) }), 401, 'invalid_mfa_code');
      assertProblem(await finish(next.challengeToken, { method: 'webauthn', credential: key.get(await requestOptions(next.challengeToken), { origin: 'https://evil.test' }) }), 401, 'invalid_mfa_code');
      // Past the delay that the third failure earned.
      clock.advance(1500);
      await finishOk(next.challengeToken, { method: 'webauthn', credential: key.get(await requestOptions(next.challengeToken)) });

      // A registration is no assertion; a user without a passkey gets no request options.
      const wrongShape = await challengeOf(user.email);
      await requestOptions(wrongShape.challengeToken);
      assertProblem(await finish(wrongShape.challengeToken, { method: 'webauthn', credential: registration }), 401, 'invalid_mfa_code');
      const totpOnly = await withTotp('passkey-none');
      assertProblem(await test.call({ method: 'POST', url: '/v1/auth/mfa/webauthn/options', body: { challengeToken: (await challengeOf(totpOnly.email)).challengeToken } }), 400, 'validation_failed');
    });

    it('policy required: a user without a factor enrols one during the login (TOTP or passkey), and cannot remove the last one', async () => {
      const policy = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/mfa-policy`, token: apiKey });
      assert.deepEqual(policy.json<{ mode: string; updatedAt: string | null }>(), { mode: 'optional', updatedAt: null });
      await setPolicy('required');
      try {
        const user = await newUser('enrol');
        const challenge = await challengeOf(user.email, 'enroll');
        assert.deepEqual(challenge.methods, ['totp', 'webauthn']);
        // Nothing to prove before a seed is issued; an enrolment cannot be finished with a recovery code.
        nextStep();
        assertProblem(await finish(challenge.challengeToken, { method: 'totp', code: '123456' }), 401, 'invalid_mfa_code');
        const started = await test.call({ method: 'POST', url: '/v1/auth/mfa/totp', body: { challengeToken: challenge.challengeToken, name: 'Work phone' } });
        assert.equal(started.statusCode, 200, started.body);
        const seed = seedOf(started.json<{ secret: string }>().secret);
        assertProblem(await finish(challenge.challengeToken, { method: 'recovery-code', code: 'abcde-fghjk' }), 401, 'invalid_mfa_code');
        const tokens = await finishOk(challenge.challengeToken, { method: 'totp', code: codeAt(seed) });
        assert.equal(tokens.recoveryCodes?.length, 10, 'the enrolment shows the recovery codes');
        const mine = await overview(tokens.accessToken);
        assert.deepEqual([mine.policy, mine.recoveryCodesLeft], ['required', 10]);
        assert.deepEqual(mine.factors.map((factor) => [factor.kind, factor.name, factor.status]), [['totp', 'Work phone', 'active']]);

        // From now on a verify challenge; a seed for it is refused.
        nextStep();
        const verify = await challengeOf(user.email);
        assertProblem(await test.call({ method: 'POST', url: '/v1/auth/mfa/totp', body: { challengeToken: verify.challengeToken } }), 400, 'validation_failed');
        await finishOk(verify.challengeToken, { method: 'totp', code: codeAt(seed) });

        // The last factor stays while the policy requires one.
        const factorId = mine.factors[0]?.id ?? '';
        assertProblem(await test.call({ method: 'DELETE', url: `/v1/me/mfa/factors/${factorId}`, token: tokens.accessToken }), 409, 'conflict');
        assert.equal((await overview(tokens.accessToken)).factors.length, 1);

        // A passkey enrolled during the login instead.
        const keyUser = await newUser('enrol-passkey');
        const keyChallenge = await challengeOf(keyUser.email, 'enroll');
        const creation = await test.call({ method: 'POST', url: '/v1/auth/mfa/webauthn/options', body: { challengeToken: keyChallenge.challengeToken } });
        assert.equal(creation.statusCode, 200, creation.body);
        const key = new SoftAuthenticator({ origin, rpId });
        const keyTokens = await finishOk(keyChallenge.challengeToken, { method: 'webauthn', credential: key.create(creation.json<{ options: PublicKeyCredentialCreationOptionsJSON }>().options) });
        assert.equal(keyTokens.recoveryCodes?.length, 10);
        assert.deepEqual((await overview(keyTokens.accessToken)).factors.map((factor) => [factor.kind, factor.status]), [['webauthn', 'active']]);
      } finally {
        await setPolicy('optional');
      }
    });

    it('policy required_for_admins asks admins only; off asks nobody and refuses enrolment', async () => {
      const admin = await newUser('admin', ['tenant-admin']);
      const member = await withTotp('member', ['member']);
      await setPolicy('required_for_admins');
      try {
        await challengeOf(admin.email, 'enroll');
        const plain = await newUser('member-plain', ['member']);
        await tokensOf(plain.email);
        // A member's own factor is still asked for, and the member may remove it.
        const tokens = await finishOk((await challengeOf(member.email)).challengeToken, { method: 'totp', code: codeAt(member.seed) });
        assert.equal((await test.call({ method: 'DELETE', url: `/v1/me/mfa/factors/${member.factorId}`, token: tokens.accessToken })).statusCode, 204);
        assert.deepEqual(await overview(tokens.accessToken), { policy: 'required_for_admins', factors: [], recoveryCodesLeft: 0 }, 'the recovery codes went with the last factor');
        await tokensOf(member.email);
      } finally {
        await setPolicy('optional');
      }

      const user = await withTotp('policy-off');
      // Enrolments begun before the policy goes off cannot be finished under it.
      const pending = (await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: user.token, body: {} })).json<{ factorId: string; secret: string }>();
      const ceremony = await test.call({ method: 'POST', url: '/v1/me/mfa/webauthn/registration-options', token: user.token });
      const passkey = new SoftAuthenticator({ origin, rpId }).create(ceremony.json<{ options: PublicKeyCredentialCreationOptionsJSON }>().options);
      await setPolicy('off');
      try {
        const tokens = await tokensOf(user.email);
        assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: tokens.accessToken, body: {} }), 403, 'mfa_disabled');
        assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/webauthn/registration-options', token: tokens.accessToken }), 403, 'mfa_disabled');
        const confirm = { method: 'POST' as const, url: `/v1/me/mfa/totp/${pending.factorId}/verify`, token: tokens.accessToken, body: { code: codeAt(seedOf(pending.secret)) } };
        assertProblem(await test.call(confirm), 403, 'mfa_disabled');
        assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/webauthn', token: tokens.accessToken, body: { credential: passkey } }), 403, 'mfa_disabled');
        assert.deepEqual((await overview(tokens.accessToken)).factors.map((factor) => [factor.kind, factor.status]), [['totp', 'active'], ['totp', 'pending']], 'the factor stays for when MFA is back');
      } finally {
        await setPolicy('optional');
      }
      await challengeOf(user.email);
    });

    it("TOTP seeds follow the tenant's key rotation: re-encrypted, the old version retired and destroyed, the factor still works", async () => {
      await test.relogOperator();
      const rotating = await test.tenantWithKey('Rotation');
      const keys = (path: string, method: 'GET' | 'POST' | 'PATCH' = 'GET', body?: unknown) =>
        test.call({ method, url: `/v1/tenants/${rotating.tenantId}/keys${path}`, token: rotating.apiKey, body });
      const email = `rotation-${randomBytes(4).toString('hex')}@example.org`;
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${rotating.tenantId}/users`, token: rotating.apiKey, body: { email, password } })).statusCode, 201);
      const loginThere = () => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: rotating.tenantId, email, password } });
      const token = (await loginThere()).json<Tokens>().accessToken;
      const started = (await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token, body: {} })).json<{ factorId: string; secret: string }>();
      const seed = seedOf(started.secret);
      const confirmed = await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${started.factorId}/verify`, token, body: { code: codeAt(seed) } });
      const [recoveryCode = ''] = confirmed.json<{ recoveryCodes: string[] }>().recoveryCodes;

      assert.equal((await keys('/rotate', 'POST')).statusCode, 200);
      assertProblem(await keys('', 'PATCH', { minDecryptionVersion: 2 }), 409, 'conflict');
      assert.equal((await keys('/reencrypt', 'POST')).statusCode, 202);
      while ((await keys('')).json<{ reencrypting: boolean }>().reencrypting) await new Promise((resolve) => setTimeout(resolve, 10));
      const stored = await test.storage.asOwner('SELECT key_version FROM mfa_factors WHERE tenant_id = $1', [rotating.tenantId]);
      assert.deepEqual(stored, [{ key_version: 2 }]);
      assert.equal((await keys('', 'PATCH', { minDecryptionVersion: 2 })).statusCode, 200);
      assert.deepEqual((await keys('/trim', 'POST')).json(), { trimmedVersions: [1] });

      nextStep();
      await finishOk((await loginThere()).json<Challenge>().challengeToken, { method: 'totp', code: codeAt(seed) });
      await finishOk((await loginThere()).json<Challenge>().challengeToken, { method: 'recovery-code', code: recoveryCode });
    });

    it('brute force: wrong codes answer 401, then 429; five spend the challenge; a correct password does not lift the MFA lockout', async () => {
      // Time moves only when the test moves it: the delays are exact, however loaded the machine.
      clock.stop();
      try {
        const user = await withTotp('guess');
        const challenge = await challengeOf(user.email);
        const wrong = () => finish(challenge.challengeToken, { method: 'totp', code: codeAt(user.seed, 3) });
        for (let attempt = 1; attempt <= 3; attempt += 1) assertProblem(await wrong(), 401, 'invalid_mfa_code');
        // From the third failure on, each check waits (1 s, then 2 s): even the right code is not checked now.
        const delayed = await finish(challenge.challengeToken, { method: 'totp', code: codeAt(user.seed) });
        assertProblem(delayed, 429, 'too_many_attempts');
        assert.equal(delayed.headers['retry-after'], '1', 'the delay, not the lockout');
        clock.advance(1500);
        assertProblem(await wrong(), 401, 'invalid_mfa_code');
        clock.advance(2500);
        assertProblem(await wrong(), 401, 'invalid_mfa_code');
        // The fifth wrong proof spent the challenge (and locked the account's second factor).
        clock.advance(5000);
        assertProblem(await finish(challenge.challengeToken, { method: 'totp', code: codeAt(user.seed) }), 401, 'mfa_challenge_invalid');

        // The password is still right, but the second factor stays locked for the lockout's length, until an
        // admin lifts the account's lockout.
        nextStep();
        const fresh = await challengeOf(user.email);
        const locked = await finish(fresh.challengeToken, { method: 'totp', code: codeAt(user.seed) });
        assertProblem(locked, 429, 'too_many_attempts');
        assert.ok(Number(locked.headers['retry-after']) > 60, `retry after ${String(locked.headers['retry-after'])} s`);
        assert.equal((await test.call({ method: 'DELETE', url: `/v1/tenants/${tenantId}/users/${user.id}/lockout`, token: apiKey })).statusCode, 204);
        await finishOk(fresh.challengeToken, { method: 'totp', code: codeAt(user.seed) });

        // Parallel guesses: no more checks than the lockout allows, whatever the timing; the lockout runs out.
        const racer = await withTotp('guess-parallel');
        const raced = await challengeOf(racer.email);
        const valid = new Set([-1, 0, 1].map((step) => codeAt(racer.seed, step)));
        const codes = Array.from({ length: 21 }, (_, index) => String(100_000 + index)).filter((code) => !valid.has(code)).slice(0, 20);
        const guesses = await Promise.all(codes.map((code) => finish(raced.challengeToken, { method: 'totp', code })));
        const checked = guesses.filter((response) => response.json<{ code: string }>().code === 'invalid_mfa_code').length;
        assert.ok(checked >= 1 && checked <= 5, `${checked} codes were checked`);
        for (const response of guesses) assert.ok([401, 429].includes(response.statusCode), response.body);
        clock.advance(16 * 60_000);
        nextStep();
        await finishOk((await challengeOf(racer.email)).challengeToken, { method: 'totp', code: codeAt(racer.seed) });
      } finally {
        clock.start();
      }
    });

    it('an open challenge does not outlive the account or the tenant: disabled or suspended meanwhile, no session starts', async () => {
      const user = await withTotp('disabled');
      const challenge = await challengeOf(user.email);
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}/users/${user.id}`, token: apiKey, body: { status: 'disabled' } })).statusCode, 200);
      assertProblem(await finish(challenge.challengeToken, { method: 'totp', code: codeAt(user.seed) }), 403, 'account_disabled');
      const refusals = await audit(`action=auth.mfa&outcome=failure&targetId=${user.id}`);
      assert.ok(refusals.some((event) => event.detail['reason'] === 'account_disabled'), 'the refusal is audited');
      assertProblem(await login(user.email), 403, 'account_disabled');

      // Another tenant, suspended by the operator between the password and the code (the clock moved past
      // the operator's first access token).
      await test.relogOperator();
      const suspended = await test.tenantWithKey('Suspended');
      const email = `suspended-${randomBytes(4).toString('hex')}@example.org`;
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${suspended.tenantId}/users`, token: suspended.apiKey, body: { email, password } })).statusCode, 201);
      const loginThere = () => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId: suspended.tenantId, email, password } });
      const token = (await loginThere()).json<Tokens>().accessToken;
      const started = (await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token, body: {} })).json<{ factorId: string; secret: string }>();
      const seed = seedOf(started.secret);
      assert.equal((await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${started.factorId}/verify`, token, body: { code: codeAt(seed) } })).statusCode, 200);
      nextStep();
      const open = (await loginThere()).json<Challenge>();
      assert.equal(open.purpose, 'verify');
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${suspended.tenantId}`, token: test.operatorToken, body: { status: 'suspended' } })).statusCode, 200);
      assertProblem(await finish(open.challengeToken, { method: 'totp', code: codeAt(seed) }), 401, 'mfa_challenge_invalid');
    });

    it('bad input: malformed, unknown, forged and other-tenant challenge tokens and wrong bodies answer 4xx and change nothing', async () => {
      const user = await withTotp('input');
      const challenge = await challengeOf(user.email);
      const secret = challenge.challengeToken.slice(4 + 12);
      const code = codeAt(user.seed);
      const badTokens = [
        'bwm_nope',
        `bwm_${tenantId}${'A'.repeat(43)}`,
        `bwm_${other.tenantId}${secret}`,
        `bwm_0123456789ab${secret}`,
        `bwm_${tenantId.toUpperCase()}${secret}`,
        `${challenge.challengeToken}A`,
        challenge.challengeToken.replace('bwm_', 'bwr_'),
      ];
      for (const challengeToken of badTokens) {
        assertProblem(await finish(challengeToken, { method: 'totp', code }), 401, 'mfa_challenge_invalid', [code, secret]);
        assertProblem(await test.call({ method: 'POST', url: '/v1/auth/mfa/totp', body: { challengeToken } }), 401, 'mfa_challenge_invalid', [secret]);
        assertProblem(await test.call({ method: 'POST', url: '/v1/auth/mfa/webauthn/options', body: { challengeToken } }), 401, 'mfa_challenge_invalid', [secret]);
      }
      const bodies: unknown[] = [
        {},
        { challengeToken: challenge.challengeToken },
        { challengeToken: challenge.challengeToken, method: 'totp' },
        { challengeToken: challenge.challengeToken, method: 'sms', code },
        { challengeToken: challenge.challengeToken, method: 'totp', code, extra: true },
        { challengeToken: challenge.challengeToken, method: 'totp', code: 123456 },
        { challengeToken: challenge.challengeToken, method: 'totp', code: '1'.repeat(17) },
        { challengeToken: challenge.challengeToken, method: 'totp', credential: {} },
        { challengeToken: challenge.challengeToken, method: 'recovery-code', code: 'x'.repeat(33) },
        { challengeToken: challenge.challengeToken, method: 'webauthn', credential: { id: 'x' } },
        { challengeToken: challenge.challengeToken, method: 'webauthn', code },
        { challengeToken: 'x'.repeat(129), method: 'totp', code },
        [challenge.challengeToken],
      ];
      for (const body of bodies) {
        const response = await test.call({ method: 'POST', url: '/v1/auth/mfa', body });
        assertProblem(response, 400, 'validation_failed', [code]);
        assertNoLeak(response.body, [challenge.challengeToken]);
      }
      assertProblem(await test.call({ method: 'POST', url: '/v1/auth/mfa', body: `{"challengeToken":"${challenge.challengeToken}",` }), 400, 'malformed_json', [challenge.challengeToken]);
      // Nothing was spent or counted: no attempt on the challenge, no MFA throttle row; the right code works.
      const attempts = await test.storage.asOwner('SELECT attempts, consumed_at FROM mfa_challenges WHERE user_id = $1', [user.id]);
      assert.deepEqual(attempts, [{ attempts: 0, consumed_at: null }]);
      assert.deepEqual(await test.storage.asOwner('SELECT failures FROM login_throttles WHERE subject = $1', [`mfa:${user.id}`]), []);
      const tokens = await finishOk(challenge.challengeToken, { method: 'totp', code });

      // Self-service: unknown or malformed factor ids, another user's factor, no token, an API key.
      const stranger = await withTotp('input-other');
      assertProblem(await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${stranger.factorId}/verify`, token: tokens.accessToken, body: { code: codeAt(stranger.seed) } }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: `/v1/me/mfa/factors/${stranger.factorId}`, token: tokens.accessToken }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: '/v1/me/mfa/factors/0123456789ab', token: tokens.accessToken }), 404, 'not_found');
      assertProblem(await test.call({ method: 'DELETE', url: '/v1/me/mfa/factors/NOT-AN-ID', token: tokens.accessToken }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: tokens.accessToken, body: { name: '   ' } }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token: tokens.accessToken, body: { secret: 'JBSWY3DPEHPK3PXP' } }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'POST', url: '/v1/me/mfa/webauthn', token: tokens.accessToken, body: { credential: { id: 'x' } } }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'GET', url: '/v1/me/mfa' }), 401, 'unauthenticated');
      assertProblem(await test.call({ method: 'GET', url: '/v1/me/mfa', token: apiKey }), 403, 'forbidden');
      assert.deepEqual((await overview(stranger.token)).factors.map((factor) => [factor.id, factor.status]), [[stranger.factorId, 'active']], "the other user's factor is untouched");

      // Policy: a mode that does not exist, another tenant's policy.
      assertProblem(await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/mfa-policy`, token: apiKey, body: { mode: 'sometimes' } }), 400, 'validation_failed');
      assertProblem(await test.call({ method: 'PUT', url: `/v1/tenants/${other.tenantId}/mfa-policy`, token: apiKey, body: { mode: 'off' } }), 404, 'not_found');
      assertProblem(await test.call({ method: 'PUT', url: `/v1/tenants/${tenantId}/mfa-policy`, token: tokens.accessToken, body: { mode: 'off' } }), 403, 'forbidden');
      assert.equal((await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/mfa-policy`, token: apiKey })).json<{ mode: string }>().mode, 'optional');
    });

    it("admin reset: DELETE .../users/{u}/mfa removes a user's factors and recovery codes (mfa:reset); unknown user 404", async () => {
      const user = await withTotp('reset');
      const member = await newUser('reset-member', ['member']);
      const memberToken = (await tokensOf(member.email)).accessToken;
      const reset = (userId: string, token = apiKey, tenant = tenantId) => test.call({ method: 'DELETE', url: `/v1/tenants/${tenant}/users/${userId}/mfa`, token });
      assertProblem(await reset(user.id, memberToken), 403, 'forbidden');
      assertProblem(await reset(user.id, other.apiKey, other.tenantId), 404, 'not_found');
      assertProblem(await reset(user.id, apiKey, other.tenantId), 404, 'not_found');
      assertProblem(await reset('0123456789ab'), 404, 'not_found');
      assertProblem(await reset('not-an-id'), 400, 'validation_failed');
      assert.equal((await overview(user.token)).factors.length, 1, 'the refusals changed nothing');

      const done = await reset(user.id);
      assert.equal(done.statusCode, 200, done.body);
      assert.deepEqual(done.json(), { removed: 1 });
      const tokens = await tokensOf(user.email);
      assert.deepEqual(await overview(tokens.accessToken), { policy: 'optional', factors: [], recoveryCodesLeft: 0 });
    });

    it('changing factors needs a recent login: a token refreshed from a session older than 10 minutes is refused, a fresh login is not', async () => {
      const user = await withTotp('sudo');
      const first = await finishOk((await challengeOf(user.email)).challengeToken, { method: 'totp', code: codeAt(user.seed) });
      clock.advance(11 * 60_000);
      const refreshed = await test.call({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      const stale = refreshed.json<Tokens>().accessToken;
      assert.equal((await overview(stale)).factors.length, 1, 'reading is fine');
      const before = await overview(stale);
      for (const [method, url] of [
        ['POST', '/v1/me/mfa/totp'],
        ['POST', '/v1/me/mfa/recovery-codes'],
        ['POST', '/v1/me/mfa/webauthn/registration-options'],
        ['DELETE', `/v1/me/mfa/factors/${user.factorId}`],
      ] as const) {
        assertProblem(await test.call({ method, url, token: stale, ...(method === 'POST' && url.endsWith('/totp') ? { body: {} } : {}) }), 403, 'reauthentication_required');
      }
      assert.deepEqual(await overview(stale), before, 'nothing changed');
      nextStep();
      const fresh = await finishOk((await challengeOf(user.email)).challengeToken, { method: 'totp', code: codeAt(user.seed) });
      const codes = await test.call({ method: 'POST', url: '/v1/me/mfa/recovery-codes', token: fresh.accessToken });
      assert.equal(codes.statusCode, 200, codes.body);
    });

    it('the audit trail has auth.mfa successes and failures and the factor events; no code or seed in it', async () => {
      const successes = await audit('action=auth.mfa&outcome=success');
      const failures = await audit('action=auth.mfa&outcome=failure');
      assert.ok(successes.length >= 10 && failures.length >= 10, `${successes.length} successes, ${failures.length} failures`);
      assert.ok(successes.every((event) => event.sessionId !== null && event.target?.type === 'user'));
      assert.deepEqual(new Set(successes.map((event) => event.detail['method'])), new Set(['totp', 'recovery-code', 'webauthn']));
      assert.ok(failures.every((event) => ['invalid_mfa_code', 'account_disabled'].includes(String(event.detail['reason']))));
      const lockouts = await audit('action=auth.lockout');
      assert.ok(lockouts.length >= 1, 'the MFA lockout is recorded');
      const logins = await audit('action=auth.login&outcome=success');
      assert.ok(logins.some((event) => event.detail['mfa'] === 'verify') && logins.some((event) => event.detail['mfa'] === 'enroll'));
      for (const action of ['mfa.factor.add', 'mfa.factor.activate', 'mfa.factor.remove', 'mfa.reset', 'mfa.recovery-codes.generate', 'mfa-policy.update']) {
        assert.ok((await audit(`action=${action}`)).length >= 1, action);
      }
      const everything = await test.call({ method: 'GET', url: `/v1/tenants/${tenantId}/audit?limit=500`, token: apiKey });
      assertNoLeak(everything.body, markers);
    });

    it('at rest: no TOTP seed, recovery code or challenge token in clear (last: the PGlite search closes the database)', async () => {
      // The seed bytes are looked for in the factor rows; the printable secrets across everything stored.
      const rows = await test.storage.asOwner("SELECT secret, key_version FROM mfa_factors WHERE kind = 'totp'");
      assert.ok(rows.length >= seeds.length);
      for (const row of rows) {
        const sealed = Buffer.from(row['secret'] as Uint8Array);
        assert.ok(sealed.length > 20 && (row['key_version'] as number) >= 1);
        for (const seed of seeds) assert.ok(!sealed.includes(seed), 'a seed is stored in clear');
      }
      const control = `control-${randomBytes(8).toString('hex')}`;
      await test.relogOperator();
      assert.equal((await test.call({ method: 'PATCH', url: `/v1/tenants/${tenantId}`, token: test.operatorToken, body: { name: control } })).statusCode, 200);
      // A bytea in clear would show as hex in the PostgreSQL dump.
      const found = await storedDataContains(test.storage, pgliteDir, [control, ...markers, ...seeds.map((seed) => seed.toString('hex'))]);
      assert.ok(found[0], 'the search finds the unencrypted control');
      assert.deepEqual(found.slice(1).filter(Boolean).length, 0, 'a secret of MFA is stored in clear');
    });
  });
}
