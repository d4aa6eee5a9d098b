import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Secret } from 'otpauth';
import { createTestApp, type TestApp } from '../../../testing/app.ts';
import { movableClock } from '../../../testing/clock.ts';
import { engineSkip, engines } from '../../../testing/engines.ts';
import { totpCode } from './totp.ts';

const password = 'a long and unusual passphrase 9!';
const stepMs = 30_000;

/**
 * Concurrency of one account's logins from one address: password logins and second factors racing each
 * other touch the same throttle rows. They must queue, never deadlock (a deadlock answers 500); and of
 * three second factors with one code exactly one wins.
 */
for (const engine of engines) {
  describe(`racing logins of one account [${engine}]`, { skip: engineSkip(engine) }, () => {
    const clock = movableClock();
    let test: TestApp;
    let tenantId: string;
    let seed: Buffer;
    const email = 'racer@example.org';
    const login = async () => test.call({ method: 'POST', url: '/v1/auth/login', body: { tenantId, email, password } });
    const nextStep = () => clock.advance(stepMs - (clock.now().getTime() % stepMs) + 1000);

    before(async () => {
      test = await createTestApp(engine, { clock, config: { authCacheTtlMs: '0' } });
      let apiKey: string;
      ({ tenantId, apiKey } = await test.tenantWithKey('Racing'));
      assert.equal((await test.call({ method: 'POST', url: `/v1/tenants/${tenantId}/users`, token: apiKey, body: { email, password } })).statusCode, 201);
      const token = (await login()).json<{ accessToken: string }>().accessToken;
      const started = (await test.call({ method: 'POST', url: '/v1/me/mfa/totp', token, body: {} })).json<{ factorId: string; secret: string }>();
      seed = Buffer.from(Secret.fromBase32(started.secret).bytes);
      nextStep();
      const confirmed = await test.call({ method: 'POST', url: `/v1/me/mfa/totp/${started.factorId}/verify`, token, body: { code: totpCode(seed, clock.now()) } });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
    });
    after(() => test.close());

    it('three logins, then three second factors with one code, ten rounds: no 500, one winner a round', async () => {
      for (let round = 0; round < 10; round += 1) {
        nextStep();
        const challenges = await Promise.all([login(), login(), login()]);
        assert.deepEqual(challenges.map((response) => response.statusCode), [200, 200, 200], `round ${round}: ${challenges.map((response) => response.body.slice(0, 80)).join(' | ')}`);
        const code = totpCode(seed, clock.now());
        const finished = await Promise.all(
          challenges.map((response) => test.call({ method: 'POST', url: '/v1/auth/mfa', body: { challengeToken: response.json<{ challengeToken: string }>().challengeToken, method: 'totp', code } })),
        );
        assert.deepEqual(finished.map((response) => response.statusCode).sort(), [200, 401, 401], `round ${round}`);
      }
    });
  });
}
