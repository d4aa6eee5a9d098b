import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Clock } from '../../platform/clock.ts';
import { toBuffer } from '../../platform/db/database.ts';
import { engineSkip, engines, openTestDatabase, type TestDatabase } from '../../testing/engines.ts';
import { EnvelopeError, open } from '../keys/envelope.ts';
import { EnvRootKey } from '../keys/root/env.ts';
import { RootKeyError } from '../keys/root/provider.ts';
import { signingKeyWrapContext } from './signing-keys.ts';
import { type AccessClaims, TokenService, type TokenConfig } from './tokens.ts';

/** A clock the tests move by hand; shared by every service of one engine and only ever moved forward. */
class ManualClock implements Clock {
  #ms: number;
  constructor(start: number) {
    this.#ms = start;
  }
  now(): Date {
    return new Date(this.#ms);
  }
  advance(ms: number): void {
    this.#ms += ms;
  }
}

const config: TokenConfig = { issuer: 'bulwark', audience: 'bulwark', accessTtlSeconds: 600, rotateAfterDays: 30 };
const userClaims: AccessClaims = { sub: 'a1b2c3d4e5f6', tenantId: '0123456789ab', sid: 'fedcba987654', roles: ['admin', 'auditor'], ver: 3, kind: 'user' };
const operatorClaims: AccessClaims = { sub: '999999999999', tenantId: null, sid: '888888888888', roles: [], ver: 0, kind: 'operator' };
// Past the 900 s maximum lifetime, the 5 s tolerance and the 10 s refresh allowance.
const verificationWindowMs = 915_000;

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
const parts = (token: string): [string, string, string] => {
  const [header = '', payload = '', signature = ''] = token.split('.');
  return [header, payload, signature];
};
const without = (object: Record<string, unknown>, key: string): Record<string, unknown> => Object.fromEntries(Object.entries(object).filter(([name]) => name !== key));
const decode = (segment: string): Record<string, unknown> => JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as Record<string, unknown>;

/** A token built by hand: any header, any payload, signed by `key` (Ed25519), or with `signature` as given. */
function forge(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject | string): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const signature = typeof key === 'string' ? key : sign(null, Buffer.from(input), key).toString('base64url');
  return `${input}.${signature}`;
}

interface StoredKey {
  kid: string;
  sealed: Buffer;
  wrapped: string;
  der: Buffer;
  privateKey: KeyObject;
}

for (const engine of engines) {
  describe(`access tokens and signing keys [${engine}]`, { skip: engineSkip(engine) }, () => {
    let storage: TestDatabase;
    const rootKeys = new EnvRootKey(randomBytes(32).toString('base64'));
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    const nowSeconds = () => Math.floor(clock.now().getTime() / 1000);
    const service = (overrides: Partial<TokenConfig> = {}) => new TokenService(storage.db, rootKeys, clock, { ...config, ...overrides });

    /** The active signing key as stored, opened the way only the root key holder can. */
    async function storedActiveKey(): Promise<StoredKey> {
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ kid: string; private_sealed: unknown; private_wrapped_key: string }>(
          'SELECT kid, private_sealed, private_wrapped_key FROM signing_keys WHERE activated_at IS NOT NULL AND retired_at IS NULL',
        ),
      );
      assert.equal(rows.length, 1, 'exactly one active signing key');
      const [row] = rows;
      assert.ok(row);
      const sealed = toBuffer(row.private_sealed);
      const sealKey = await rootKeys.unwrap(row.private_wrapped_key, signingKeyWrapContext);
      const der = open(sealed, { tenantId: 'platform', table: 'signing_keys', column: 'private_sealed', rowId: row.kid }, (version) => (version === 1 ? sealKey : undefined));
      return { kid: row.kid, sealed, wrapped: row.private_wrapped_key, der, privateKey: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) };
    }

    const validPayload = (): Record<string, unknown> => {
      const now = nowSeconds();
      return { iss: 'bulwark', sub: 'a1b2c3d4e5f6', aud: 'bulwark', exp: now + 600, nbf: now, iat: now, jti: 'jti-1', tenantId: '0123456789ab', sid: 'fedcba987654', roles: ['admin'], ver: 1, kind: 'user' };
    };

    before(async () => {
      storage = await openTestDatabase(engine);
    });
    after(() => storage.close());

    it('instances starting together on an empty database agree on one signing key', async () => {
      const first = service();
      const second = service();
      await Promise.all([first.init(), second.init()]);
      const [one, two] = [await first.jwks(), await second.jwks()];
      assert.equal(one.keys.length, 1);
      assert.deepEqual(one, two);
      const { rows } = await storage.db.withPlatform((tx) => tx.query<{ count: number }>('SELECT count(*)::int AS count FROM signing_keys'));
      assert.deepEqual(rows, [{ count: 1 }]);
      // Starting again creates nothing.
      await service().init();
      assert.deepEqual(await service().jwks(), one);
    });

    it('issue → verify keeps every claim; jose verifies the same token against the JWKS', async () => {
      const tokens = service();
      await tokens.init();
      for (const claims of [userClaims, operatorClaims]) {
        const { token, expiresAt } = await tokens.issueAccessToken(claims);
        assert.equal(expiresAt.getTime(), (nowSeconds() + 600) * 1000);
        const verified = await tokens.verifyAccessToken(token);
        assert.ok(verified);
        const { exp, iat, jti, ...rest } = verified;
        assert.deepEqual(rest, claims);
        assert.equal(iat, nowSeconds());
        assert.equal(exp, iat + 600);
        assert.match(jti, /^[A-Za-z0-9_-]{22}$/);
        assert.ok(tokens.accepts(token));

        const header = decodeProtectedHeader(token);
        assert.deepEqual(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
        assert.equal(header.alg, 'EdDSA');
        assert.equal(header.typ, 'at+jwt');
        const independent = await jwtVerify(token, createLocalJWKSet(await tokens.jwks()), {
          issuer: 'bulwark',
          audience: 'bulwark',
          typ: 'at+jwt',
          algorithms: ['EdDSA'],
          currentDate: clock.now(),
        });
        assert.equal(independent.payload.sub, claims.sub);
        assert.equal(independent.payload['tenantId'], claims.tenantId);
      }
    });

    it('the JWKS holds public halves only; the private key is stored sealed under a root-wrapped key', async () => {
      const tokens = service();
      await tokens.init();
      const { keys } = await tokens.jwks();
      for (const key of keys) {
        assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
        assert.deepEqual([key.kty, key.crv, key.alg, key.use], ['OKP', 'Ed25519', 'EdDSA', 'sig']);
      }
      const stored = await storedActiveKey();
      assert.match(stored.kid, /^[A-Za-z0-9_-]{16}$/);
      // The sealed blob holds neither the PKCS#8 DER nor the 32-byte seed at its end.
      assert.equal(stored.sealed.includes(stored.der), false);
      assert.equal(stored.sealed.includes(stored.der.subarray(-32)), false);
      assert.match(stored.wrapped, /^bwrk:env:v1:/, 'the wrapped key names the root key provider and version');
      // The key that opens from storage is the one that signs.
      const token = await tokens.issueAccessToken(userClaims);
      assert.equal(decodeProtectedHeader(token.token).kid, stored.kid);
      const published = keys.find((key) => key.kid === stored.kid);
      assert.equal(createPublicKey(stored.privateKey).export({ format: 'jwk' }).x, published?.x);
      // Bound to its purpose and its row: a data-key unwrap and a move to another row both fail.
      await assert.rejects(rootKeys.unwrap(stored.wrapped, { tenantId: 'platform', keyVersion: 1 }), RootKeyError);
      const sealKey = await rootKeys.unwrap(stored.wrapped, signingKeyWrapContext);
      assert.throws(
        () => open(stored.sealed, { tenantId: 'platform', table: 'signing_keys', column: 'private_sealed', rowId: 'AAAAAAAAAAAAAAAA' }, () => sealKey),
        EnvelopeError,
      );
      const { rows } = await storage.db.withPlatform((tx) => tx.query<{ public_jwk: Record<string, unknown> }>('SELECT public_jwk FROM signing_keys'));
      for (const row of rows) assert.equal('d' in row.public_jwk, false);
    });

    describe('rejects (null, never throws)', () => {
      let tokens: TokenService;
      let active: StoredKey;
      const header = () => ({ alg: 'EdDSA', typ: 'at+jwt', kid: active.kid });

      before(async () => {
        tokens = service();
        await tokens.init();
        active = await storedActiveKey();
      });

      const refused = async (token: string, message: string) => assert.equal(await tokens.verifyAccessToken(token), null, message);

      it('the forging helper makes tokens that verify (so each rejection below is down to its one change)', async () => {
        assert.ok(await tokens.verifyAccessToken(forge(header(), validPayload(), active.privateKey)));
        const early = { ...validPayload(), nbf: nowSeconds() + 4, iat: nowSeconds() + 4 };
        assert.ok(await tokens.verifyAccessToken(forge(header(), early, active.privateKey)), 'within the 5 s clock tolerance');
      });

      it('expired', async () => {
        const { token } = await tokens.issueAccessToken(userClaims);
        clock.advance(606_000);
        await refused(token, 'past exp + tolerance');
        const old = { ...validPayload(), iat: nowSeconds() - 700, nbf: nowSeconds() - 700, exp: nowSeconds() - 100 };
        await refused(forge(header(), old, active.privateKey), 'exp in the past');
      });

      it('not yet valid, issued in the future, or living longer than any token may', async () => {
        await refused(forge(header(), { ...validPayload(), nbf: nowSeconds() + 60 }, active.privateKey), 'nbf in the future');
        const future = { ...validPayload(), iat: nowSeconds() + 60, nbf: nowSeconds() + 60, exp: nowSeconds() + 660 };
        await refused(forge(header(), future, active.privateKey), 'iat in the future');
        await refused(forge(header(), { ...validPayload(), exp: nowSeconds() + 3600 }, active.privateKey), 'an hour-long token');
      });

      it('wrong issuer or audience', async () => {
        await refused(forge(header(), { ...validPayload(), iss: 'https://evil.example' }, active.privateKey), 'issuer');
        await refused(forge(header(), { ...validPayload(), aud: 'another-service' }, active.privateKey), 'audience');
        await refused(forge(header(), { ...validPayload(), aud: ['bulwark', 'another-service'] }, active.privateKey), 'audience list');
      });

      it('alg none: an unsigned token crafted by hand', async () => {
        for (const alg of ['none', 'None', 'NONE']) {
          await refused(forge({ alg, typ: 'at+jwt', kid: active.kid }, validPayload(), ''), `${alg}, empty signature`);
          await refused(forge({ alg, typ: 'at+jwt' }, validPayload(), ''), `${alg}, no kid`);
          // A signature of the right length does not make `none` acceptable either.
          await refused(forge({ alg, typ: 'at+jwt', kid: active.kid }, validPayload(), randomBytes(64).toString('base64url')), `${alg}, padded`);
        }
      });

      it('HS256/HS512 with the public key as the HMAC secret (key confusion)', async () => {
        const jwk = (await tokens.jwks()).keys.find((key) => key.kid === active.kid);
        assert.ok(jwk?.x);
        const publicKey = createPublicKey(active.privateKey);
        const secrets = [
          Buffer.from(jwk.x, 'base64url'),
          Buffer.from(JSON.stringify(jwk)),
          Buffer.from(publicKey.export({ format: 'pem', type: 'spki' })),
          publicKey.export({ format: 'der', type: 'spki' }),
        ];
        for (const [alg, hash] of [['HS256', 'sha256'], ['HS512', 'sha512']] as const) {
          for (const secret of secrets) {
            const input = `${b64({ alg, typ: 'at+jwt', kid: active.kid })}.${b64(validPayload())}`;
            // HS512 gives 64 bytes, the length of an Ed25519 signature, so it gets past the shape check.
            await refused(`${input}.${createHmac(hash, secret).update(input).digest('base64url')}`, `${alg} with ${secret.length}-byte secret`);
          }
        }
        await refused(forge({ alg: 'ES256', typ: 'at+jwt', kid: active.kid }, validPayload(), active.privateKey), 'another asymmetric alg name');
      });

      it('unknown kid, or a known kid with a signature of another key', async () => {
        const stranger = generateKeyPairSync('ed25519').privateKey;
        await refused(forge({ ...header(), kid: 'AAAAAAAAAAAAAAAA' }, validPayload(), active.privateKey), 'unknown kid, real key');
        await refused(forge(header(), validPayload(), stranger), 'known kid, wrong key');
        await refused(forge({ ...header(), kid: 42 }, validPayload(), active.privateKey), 'kid not a string');
        await refused(forge(without(header(), 'kid'), validPayload(), active.privateKey), 'no kid');
      });

      it('tampered payload (one claim changed, signature kept)', async () => {
        const { token } = await tokens.issueAccessToken(userClaims);
        const [headerPart, payloadPart, signature] = parts(token);
        for (const change of [{ tenantId: 'ffffffffffff' }, { roles: ['admin', 'auditor', 'owner'] }, { exp: decode(payloadPart)['exp'] as number + 60 }, { kind: 'operator', tenantId: null }]) {
          await refused(`${headerPart}.${b64({ ...decode(payloadPart), ...change })}.${signature}`, JSON.stringify(change));
        }
        // A flipped signature bit, and the same signature in a non-canonical base64url spelling.
        const flipped = Buffer.from(signature, 'base64url');
        flipped[10] = (flipped[10] ?? 0) ^ 1;
        await refused(`${headerPart}.${payloadPart}.${flipped.toString('base64url')}`, 'flipped signature bit');
        const lastChar = signature.at(-1) ?? 'A';
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        const sibling = alphabet[alphabet.indexOf(lastChar) ^ 1] ?? 'A';
        await refused(`${headerPart}.${payloadPart}.${signature.slice(0, -1)}${sibling}`, 'non-canonical signature encoding');
        assert.ok(await tokens.verifyAccessToken(token), 'the untouched token verifies');
      });

      it('tampered header', async () => {
        const { token } = await tokens.issueAccessToken(userClaims);
        const [headerPart, payloadPart, signature] = parts(token);
        const original = decode(headerPart);
        const reordered = { kid: original['kid'], typ: original['typ'], alg: original['alg'] };
        await refused(`${b64(reordered)}.${payloadPart}.${signature}`, 'same header, other bytes');
        await refused(`${b64({ ...original, jku: 'https://evil.example/jwks' })}.${payloadPart}.${signature}`, 'jku added');
        // Extra header parameters are refused even when properly signed.
        for (const extra of [{ jku: 'https://evil.example/jwks' }, { crit: ['exp'] }, { jwk: { kty: 'OKP' } }, { b64: false }]) {
          await refused(forge({ ...header(), ...extra }, validPayload(), active.privateKey), JSON.stringify(extra));
        }
      });

      it('wrong typ', async () => {
        for (const typ of ['JWT', 'jwt', 'application/at+jwt', 'AT+JWT', undefined, 1]) {
          await refused(forge({ ...header(), typ }, validPayload(), active.privateKey), String(typ));
        }
      });

      it('missing or mistyped claims', async () => {
        for (const claim of ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti', 'tenantId', 'sid', 'roles', 'ver', 'kind']) {
          await refused(forge(header(), without(validPayload(), claim), active.privateKey), `missing ${claim}`);
        }
        const mistyped: Record<string, unknown>[] = [
          { sub: '' },
          { sub: 7 },
          { sid: null },
          { jti: '' },
          { exp: String(nowSeconds() + 600) },
          { exp: nowSeconds() + 600.5 },
          { iat: -1 },
          { ver: '1' },
          { ver: 1.5 },
          { ver: -1 },
          { roles: 'admin' },
          { roles: ['admin', 1] },
          { roles: [''] },
          { kind: 'service' },
          { tenantId: null },
          { tenantId: '' },
          { kind: 'operator' },
        ];
        for (const change of mistyped) await refused(forge(header(), { ...validPayload(), ...change }, active.privateKey), JSON.stringify(change));
        await refused(forge(header(), { ...validPayload(), kind: 'operator', tenantId: null }, active.privateKey).replace(/\.[^.]*$/, '.x'), 'sanity: bad signature');
        assert.ok(await tokens.verifyAccessToken(forge(header(), { ...validPayload(), kind: 'operator', tenantId: null }, active.privateKey)), 'an operator token has tenantId null');
      });

      it('garbage strings', async () => {
        const garbage = [
          '',
          '.',
          '..',
          '...',
          'abc',
          'a.b.c',
          'a.b.c.d',
          'bwk_0123456789ab_secret',
          'bws_c2V0dXA',
          'Bearer x.y.z',
          `${b64({ alg: 'EdDSA' })}.${b64({})}.`,
          `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid: 'x' })}.${b64('a string')}.${'A'.repeat(86)}`,
          `${b64(['array'])}.${b64({})}.${'A'.repeat(86)}`,
          `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid: 'x' })}=.${b64({})}.${'A'.repeat(86)}`,
          'eyJ.eyJ.' + 'A'.repeat(86),
          '\u0000\uffff\ud800.é.ü',
          'x'.repeat(100_000),
          `${'a.'.repeat(10_000)}a`,
        ];
        for (const token of garbage) await refused(token, JSON.stringify(token.slice(0, 40)));
        // What an untyped caller might pass.
        const untyped = tokens as unknown as { verifyAccessToken(token: unknown): Promise<unknown>; accepts(token: unknown): boolean };
        for (const notAString of [undefined, null, 42, {}, ['a.b.c']]) {
          assert.equal(await untyped.verifyAccessToken(notAString), null);
          assert.equal(untyped.accepts(notAString), false);
        }
      });

      it('accepts() routes JWT-shaped bearers only', async () => {
        const { token } = await tokens.issueAccessToken(userClaims);
        assert.equal(tokens.accepts(token), true);
        assert.equal(tokens.accepts(forge({ alg: 'none' }, {}, '')), true, 'an unsigned JWT is still a JWT: the verifier refuses it');
        for (const other of ['bwk_0123456789ab_c2VjcmV0', 'bws_c2V0dXA', 'a.b.c', '', 'abc', `${b64('x')}.${b64({})}.sig`]) {
          assert.equal(tokens.accepts(other), false, other);
        }
      });
    });

    it('rotation: new tokens carry the new kid, old ones verify until the window closes, then the key leaves the JWKS', async () => {
      const tokens = service();
      await tokens.init();
      const old = await storedActiveKey();
      const before = await tokens.issueAccessToken(userClaims);
      assert.equal(decodeProtectedHeader(before.token).kid, old.kid);

      const { kid } = await tokens.rotate();
      assert.notEqual(kid, old.kid);
      const afterRotation = await tokens.issueAccessToken(userClaims);
      assert.equal(decodeProtectedHeader(afterRotation.token).kid, kid);
      assert.ok(await tokens.verifyAccessToken(before.token), 'a token of the retired key still verifies');
      assert.ok(await tokens.verifyAccessToken(afterRotation.token));
      const kids = (await tokens.jwks()).keys.map((key) => key.kid);
      assert.ok(kids.includes(kid) && kids.includes(old.kid), 'the JWKS has both');
      assert.equal(kids[0], kid, 'the signing key first');

      // The retired key's private half is gone from the database at once.
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ private_sealed: unknown; private_wrapped_key: string | null; retired: boolean; destroyed: boolean }>(
          'SELECT private_sealed, private_wrapped_key, retired_at IS NOT NULL AS retired, destroyed_at IS NOT NULL AS destroyed FROM signing_keys WHERE kid = $1',
          [old.kid],
        ),
      );
      assert.deepEqual(rows, [{ private_sealed: null, private_wrapped_key: null, retired: true, destroyed: true }]);

      // A fresh token in the old key's name (its private half captured before the rotation) verifies inside
      // the window and fails after it: the key itself is what expires, not only its tokens.
      const inWindow = forge({ alg: 'EdDSA', typ: 'at+jwt', kid: old.kid }, validPayload(), old.privateKey);
      assert.ok(await tokens.verifyAccessToken(inWindow));
      clock.advance(verificationWindowMs);
      const late = forge({ alg: 'EdDSA', typ: 'at+jwt', kid: old.kid }, validPayload(), old.privateKey);
      assert.equal(await tokens.verifyAccessToken(late), null);
      assert.equal(await tokens.verifyAccessToken(before.token), null);
      assert.deepEqual((await tokens.jwks()).keys.map((key) => key.kid), [kid]);
      // The same on an instance that starts now.
      const fresh = service();
      await fresh.init();
      assert.deepEqual((await fresh.jwks()).keys.map((key) => key.kid), [kid]);
      assert.equal(await fresh.verifyAccessToken(late), null);
    });

    it('rotates by itself on issue once the signing key is rotateAfterDays old, once across instances', async () => {
      const first = service();
      const second = service();
      await Promise.all([first.init(), second.init()]);
      const { kid: current } = await storedActiveKey();
      clock.advance(30 * 86_400_000);
      const [one, two] = await Promise.all([first.issueAccessToken(userClaims), second.issueAccessToken(operatorClaims)]);
      const next = (await storedActiveKey()).kid;
      assert.notEqual(next, current);
      assert.equal(decodeProtectedHeader(one.token).kid, next);
      assert.equal(decodeProtectedHeader(two.token).kid, next);
      const { rows } = await storage.db.withPlatform((tx) =>
        tx.query<{ count: number }>('SELECT count(*)::int AS count FROM signing_keys WHERE activated_at > $1', [new Date(clock.now().getTime() - 1000)]),
      );
      assert.deepEqual(rows, [{ count: 1 }], 'one rotation, not one per instance');
      assert.ok((await first.jwks()).keys.some((key) => key.kid === current), 'the previous key still verifies');
    });

    it('a second instance verifies the first one’s tokens, also after the first rotated', async () => {
      const first = service();
      const second = service();
      await first.init();
      await second.init();
      const token = (await first.issueAccessToken(userClaims)).token;
      assert.ok(await second.verifyAccessToken(token));

      // The first rotates; the second has never seen the new kid and reloads once to find it.
      const { kid } = await first.rotate();
      const rotated = (await first.issueAccessToken(userClaims)).token;
      assert.equal(decodeProtectedHeader(rotated).kid, kid);
      assert.ok(await second.verifyAccessToken(rotated));
      assert.ok((await second.jwks()).keys.some((key) => key.kid === kid));

      // Unknown kids reload at most once per few seconds: right after a reload, a new kid waits its turn.
      const { kid: third } = await first.rotate();
      const thirdToken = (await first.issueAccessToken(userClaims)).token;
      assert.equal(await second.verifyAccessToken(thirdToken), null, 'within the reload limit');
      clock.advance(5_000);
      assert.ok(await second.verifyAccessToken(thirdToken), 'after it');
      assert.equal(decodeProtectedHeader(thirdToken).kid, third);

      // The second signs with the new key once it notices (at most refreshMs later), not with the retired one.
      clock.advance(10_000);
      const fromSecond = (await second.issueAccessToken(userClaims)).token;
      assert.equal(decodeProtectedHeader(fromSecond).kid, third);
      assert.ok(await first.verifyAccessToken(fromSecond));
    });

    it('verify cache: a repeated token skips the signature check; an expired cached token is refused', async () => {
      // A cache TTL longer than the token's life: the entry must still end at the token's exp.
      const tokens = service({ verifyCacheTtlMs: 3_600_000 });
      await tokens.init();
      const { token } = await tokens.issueAccessToken(userClaims);
      const start = tokens.stats;
      const first = await tokens.verifyAccessToken(token);
      const second = await tokens.verifyAccessToken(token);
      assert.ok(first && second);
      assert.deepEqual(second, first);
      assert.deepEqual(tokens.stats, { signatureChecks: start.signatureChecks + 1, cacheHits: start.cacheHits + 1 });
      assert.throws(() => {
        second.roles.push('owner');
      }, TypeError, 'cached claims cannot be changed by a caller');

      clock.advance(590_000);
      assert.ok(await tokens.verifyAccessToken(token), 'still valid, from the cache');
      assert.equal(tokens.stats.signatureChecks, start.signatureChecks + 1);
      clock.advance(16_000);
      assert.equal(await tokens.verifyAccessToken(token), null, 'expired while cached');

      // The default cache keeps an entry 60 s at most, then checks the signature again.
      const short = service();
      await short.init();
      const fresh = (await short.issueAccessToken(userClaims)).token;
      await short.verifyAccessToken(fresh);
      await short.verifyAccessToken(fresh);
      clock.advance(61_000);
      await short.verifyAccessToken(fresh);
      assert.deepEqual(short.stats, { signatureChecks: 2, cacheHits: 1 });

      // Without a cache every verification checks the signature (what a benchmark of the raw path uses).
      const uncached = service({ verifyCacheMaxEntries: 0 });
      await uncached.init();
      await uncached.verifyAccessToken(fresh);
      await uncached.verifyAccessToken(fresh);
      assert.deepEqual(uncached.stats, { signatureChecks: 2, cacheHits: 0 });
    });

    it('refuses a configuration outside the limits', () => {
      for (const bad of [{ accessTtlSeconds: 60 }, { accessTtlSeconds: 3600 }, { rotateAfterDays: 0 }, { issuer: '' }, { verifyCacheMaxEntries: -1 }]) {
        assert.throws(() => service(bad), /token config/, JSON.stringify(bad));
      }
    });
  });
}
