import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SoftAuthenticator } from '../../../testing/soft-authenticator.ts';
import {
  authenticationOptions,
  ceremonyTimeoutMs,
  credentialIdOf,
  registrationOptions,
  type StoredCredential,
  verifyAuthentication,
  verifyRegistration,
  type WebAuthnRefusalReason,
  WebAuthnRefusal,
  type WebAuthnRelyingParty,
} from './webauthn.ts';

const origin = 'https://app.bulwark.test';
const rp: WebAuthnRelyingParty = { rpId: 'app.bulwark.test', rpName: 'Bulwark', origins: [origin, 'https://console.bulwark.test'] };
const user = { id: '0a1b2c3d4e5f', name: 'ada@example.com', displayName: 'Ada' };

async function refused(promise: Promise<unknown>, reason: WebAuthnRefusalReason): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof WebAuthnRefusal, String(error));
    assert.equal(error.reason, reason, error.cause instanceof Error ? error.cause.message : error.message);
    return true;
  });
}

/** A fresh authenticator with its credential registered and stored. */
async function enrolled(): Promise<{ key: SoftAuthenticator; credential: StoredCredential }> {
  const key = new SoftAuthenticator({ origin, rpId: rp.rpId });
  const { options, challenge } = await registrationOptions(rp, user, []);
  return { key, credential: await verifyRegistration(rp, key.create(options), challenge) };
}

type Json = Record<string, unknown> & { response: Record<string, unknown> };

/** A deep copy of a response with one change, typed loosely enough to break it. */
function mutated(value: object, change: (copy: Json) => void): Json {
  const copy = structuredClone(value) as Json;
  change(copy);
  return copy;
}

function encodedJson(text: string): string {
  return Buffer.from(text).toString('base64url');
}

describe('webauthn: options', () => {
  it('registration options: none attestation, preferred UV and resident key, ES256/EdDSA/RS256, existing credentials excluded', async () => {
    const existing: StoredCredential = { credentialId: 'AAECAwQFBgcICQoLDA0ODw', publicKey: Buffer.alloc(0), counter: 3, transports: ['usb', 'nfc'] };
    const { options, challenge } = await registrationOptions(rp, user, [existing]);
    assert.equal(options.challenge, challenge);
    assert.ok(Buffer.from(challenge, 'base64url').length >= 16);
    assert.deepEqual(options.rp, { name: 'Bulwark', id: rp.rpId });
    assert.deepEqual(options.user, { id: Buffer.from(user.id).toString('base64url'), name: user.name, displayName: user.displayName });
    assert.equal(options.attestation, 'none');
    assert.deepEqual(options.authenticatorSelection, { residentKey: 'preferred', userVerification: 'preferred', requireResidentKey: false });
    assert.deepEqual(options.pubKeyCredParams.map((param) => param.alg), [-7, -8, -257]);
    assert.deepEqual(options.excludeCredentials, [{ id: existing.credentialId, transports: ['usb', 'nfc'], type: 'public-key' }]);
    assert.equal(options.timeout, ceremonyTimeoutMs);
  });

  it('every call draws a new challenge', async () => {
    const first = await registrationOptions(rp, user, []);
    const second = await registrationOptions(rp, user, []);
    assert.notEqual(first.challenge, second.challenge);
    const third = await authenticationOptions(rp, []);
    const fourth = await authenticationOptions(rp, []);
    assert.notEqual(third.challenge, fourth.challenge);
  });

  it('refuses a user id that cannot be a user handle (over 64 bytes)', async () => {
    await assert.rejects(registrationOptions(rp, { ...user, id: 'x'.repeat(65) }, []), RangeError);
  });

  it('an authenticator that holds an excluded credential refuses to register it again', async () => {
    const { key, credential } = await enrolled();
    const { options } = await registrationOptions(rp, user, [credential]);
    assert.throws(() => key.create(options), /InvalidStateError/);
  });

  it('authentication options list the allowed credentials, or none for a discoverable login', async () => {
    const { credential } = await enrolled();
    const { options, challenge } = await authenticationOptions(rp, [credential]);
    assert.equal(options.challenge, challenge);
    assert.equal(options.rpId, rp.rpId);
    assert.equal(options.userVerification, 'preferred');
    assert.deepEqual(options.allowCredentials, [{ id: credential.credentialId, transports: ['usb'], type: 'public-key' }]);
    const discoverable = await authenticationOptions(rp, []);
    assert.deepEqual(discoverable.options.allowCredentials ?? [], []);
  });
});

describe('webauthn: registration', () => {
  it('stores the credential the authenticator created', async () => {
    const key = new SoftAuthenticator({ origin, rpId: rp.rpId });
    const { options, challenge } = await registrationOptions(rp, user, []);
    const credential = await verifyRegistration(rp, key.create(options), challenge);
    assert.equal(credential.credentialId, key.credentialId);
    assert.equal(credential.counter, 0);
    assert.deepEqual(credential.transports, ['usb']);
    assert.ok(Buffer.isBuffer(credential.publicKey) && credential.publicKey.length > 64);
  });

  it('accepts every configured origin, and an authenticator that did not verify the user (UV is preferred)', async () => {
    const key = new SoftAuthenticator({ origin: 'https://console.bulwark.test', rpId: rp.rpId });
    const { options, challenge } = await registrationOptions(rp, user, []);
    const credential = await verifyRegistration(rp, key.create(options, { userVerified: false }), challenge);
    assert.equal(credential.credentialId, key.credentialId);
  });

  it('refuses the wrong challenge, with a message that does not quote either challenge', async () => {
    const key = new SoftAuthenticator({ origin, rpId: rp.rpId });
    const { options, challenge } = await registrationOptions(rp, user, []);
    const other = await registrationOptions(rp, user, []);
    const promise = verifyRegistration(rp, key.create(options), other.challenge);
    await refused(promise, 'challenge_mismatch');
    await promise.catch((error: unknown) => {
      assert.ok(error instanceof WebAuthnRefusal);
      assert.ok(!error.message.includes(challenge) && !error.message.includes(other.challenge));
      assert.ok(error.cause instanceof Error, 'the library error is kept as cause');
    });
  });

  it('refuses another origin, another RP ID, a framed ceremony and a missing user presence', async () => {
    const key = new SoftAuthenticator({ origin, rpId: rp.rpId });
    const cases: [Parameters<SoftAuthenticator['create']>[1], WebAuthnRefusalReason][] = [
      [{ origin: 'https://evil.test' }, 'origin_mismatch'],
      [{ origin: 'http://app.bulwark.test' }, 'origin_mismatch'],
      [{ rpIdHashOf: 'evil.test' }, 'rp_mismatch'],
      [{ crossOrigin: true }, 'origin_mismatch'],
      [{ crossOrigin: true, topOrigin: 'https://evil.test' }, 'origin_mismatch'],
      [{ topOrigin: origin }, 'origin_mismatch'],
      [{ userPresent: false }, 'user_not_present'],
    ];
    for (const [misbehave, reason] of cases) {
      const { options, challenge } = await registrationOptions(rp, user, []);
      await refused(verifyRegistration(rp, key.create(options, misbehave), challenge), reason);
    }
  });

  it('refuses an assertion presented as a registration, and a response whose id is not the attested one', async () => {
    const { key, credential } = await enrolled();
    const request = await authenticationOptions(rp, [credential]);
    await refused(verifyRegistration(rp, key.get(request.options), request.challenge), 'malformed');
    const other = new SoftAuthenticator({ origin, rpId: rp.rpId });
    const { options, challenge } = await registrationOptions(rp, user, []);
    const swapped = mutated(other.create(options), (copy) => {
      copy.id = key.credentialId;
      copy.rawId = key.credentialId;
    });
    await refused(verifyRegistration(rp, swapped, challenge), 'malformed');
  });

  it('refuses malformed shapes before the library sees them', async () => {
    const key = new SoftAuthenticator({ origin, rpId: rp.rpId });
    const { options, challenge } = await registrationOptions(rp, user, []);
    const good = key.create(options);
    const shapes: unknown[] = [
      null,
      'a string',
      [],
      42,
      mutated(good, (copy) => delete copy.id),
      mutated(good, (copy) => delete copy.clientExtensionResults),
      mutated(good, (copy) => delete copy.response.attestationObject),
      mutated(good, (copy) => delete copy.response.clientDataJSON),
      mutated(good, (copy) => (copy.type = 'password')),
      mutated(good, (copy) => (copy.authenticatorAttachment = 'bogus')),
      mutated(good, (copy) => (copy.extra = true)),
      mutated(good, (copy) => (copy.response.extra = 'x')),
      mutated(good, (copy) => (copy.clientExtensionResults = { prf: { enabled: true } })),
      mutated(good, (copy) => (copy.id = copy.rawId = 'A'.repeat(1365))),
      mutated(good, (copy) => (copy.response.clientDataJSON = 'A'.repeat(4097))),
      mutated(good, (copy) => (copy.response.attestationObject = 'A'.repeat(32_769))),
      mutated(good, (copy) => (copy.response.attestationObject = 'not+base64/url=')),
      mutated(good, (copy) => (copy.response.transports = Array.from({ length: 9 }, () => 'usb'))),
      mutated(good, (copy) => (copy.response.transports = ['USB ; injected'])),
      mutated(good, (copy) => (copy.response.attestationObject = 'AAAA')),
      mutated(good, (copy) => (copy.response.clientDataJSON = encodedJson('not json'))),
      mutated(good, (copy) => (copy.response.clientDataJSON = encodedJson('null'))),
      mutated(good, (copy) => (copy.response.clientDataJSON = encodedJson('{"type":"webauthn.create"}'))),
    ];
    for (const shape of shapes) await refused(verifyRegistration(rp, shape, challenge), 'malformed');
    // The same challenge still accepts the unbroken response: the refusals above were about the shapes.
    assert.equal((await verifyRegistration(rp, good, challenge)).credentialId, key.credentialId);
  });
});

describe('webauthn: authentication', () => {
  it('accepts assertions of the registered credential and the counter advances', async () => {
    const { key, credential } = await enrolled();
    let stored = credential;
    for (const expected of [1, 2]) {
      const { options, challenge } = await authenticationOptions(rp, [stored]);
      const response = key.get(options);
      assert.equal(credentialIdOf(response), stored.credentialId);
      const result = await verifyAuthentication(rp, response, challenge, stored, user.id);
      assert.deepEqual(result, { newCounter: expected, userVerified: true });
      stored = { ...stored, counter: result.newCounter };
    }
  });

  it('reports an assertion without user verification as such (UV is preferred, not required)', async () => {
    const { key, credential } = await enrolled();
    const { options, challenge } = await authenticationOptions(rp, []);
    const result = await verifyAuthentication(rp, key.get(options, { userVerified: false }), challenge, credential, user.id);
    assert.deepEqual(result, { newCounter: 1, userVerified: false });
  });

  it('refuses the wrong challenge, another origin, another RP ID, a framed ceremony and a missing user presence', async () => {
    const { key, credential } = await enrolled();
    const cases: [Parameters<SoftAuthenticator['get']>[1], WebAuthnRefusalReason][] = [
      [{ origin: 'https://evil.test' }, 'origin_mismatch'],
      [{ rpIdHashOf: 'bulwark.test' }, 'rp_mismatch'],
      [{ crossOrigin: true }, 'origin_mismatch'],
      [{ crossOrigin: true, topOrigin: 'https://evil.test' }, 'origin_mismatch'],
      [{ topOrigin: origin }, 'origin_mismatch'],
      [{ userPresent: false }, 'user_not_present'],
    ];
    for (const [misbehave, reason] of cases) {
      const { options, challenge } = await authenticationOptions(rp, [credential]);
      await refused(verifyAuthentication(rp, key.get(options, misbehave), challenge, credential, user.id), reason);
    }
    const { options } = await authenticationOptions(rp, [credential]);
    const other = await authenticationOptions(rp, [credential]);
    await refused(verifyAuthentication(rp, key.get(options), other.challenge, credential, user.id), 'challenge_mismatch');
  });

  it('refuses a bad signature, a tampered signature and tampered authenticator data', async () => {
    const { key, credential } = await enrolled();
    const request = async () => authenticationOptions(rp, [credential]);
    let { options, challenge } = await request();
    await refused(verifyAuthentication(rp, key.get(options, { badSignature: true }), challenge, credential, user.id), 'signature_invalid');

    ({ options, challenge } = await request());
    const tamperedSignature = mutated(key.get(options), (copy) => {
      // The last byte of a DER ECDSA signature is the last byte of s: still DER, no longer valid.
      const signature = Buffer.from(String(copy.response.signature), 'base64url');
      signature.writeUInt8(signature.readUInt8(signature.length - 1) ^ 0x01, signature.length - 1);
      copy.response.signature = signature.toString('base64url');
    });
    await refused(verifyAuthentication(rp, tamperedSignature, challenge, credential, user.id), 'signature_invalid');

    ({ options, challenge } = await request());
    const tamperedData = mutated(key.get(options), (copy) => {
      const authData = Buffer.from(String(copy.response.authenticatorData), 'base64url');
      authData.writeUInt32BE(authData.readUInt32BE(33) + 100, 33); // a higher counter, unsigned
      copy.response.authenticatorData = authData.toString('base64url');
    });
    await refused(verifyAuthentication(rp, tamperedData, challenge, credential, user.id), 'signature_invalid');
  });

  it('refuses a replayed assertion and an authenticator whose counter stands still (a clone)', async () => {
    const { key, credential } = await enrolled();
    const { options, challenge } = await authenticationOptions(rp, [credential]);
    const response = key.get(options);
    const { newCounter } = await verifyAuthentication(rp, response, challenge, credential, user.id);
    const stored = { ...credential, counter: newCounter };
    await refused(verifyAuthentication(rp, response, challenge, stored, user.id), 'counter_regressed');

    const next = await authenticationOptions(rp, [stored]);
    await refused(verifyAuthentication(rp, key.get(next.options, { freezeCounter: true }), next.challenge, stored, user.id), 'counter_regressed');
  });

  it('an unsigned low counter is a bad signature, not a clone: a forger cannot get a genuine key flagged', async () => {
    const { key, credential } = await enrolled();
    const stored = { ...credential, counter: 50 };
    const { options, challenge } = await authenticationOptions(rp, [stored]);
    await refused(verifyAuthentication(rp, key.get(options, { badSignature: true }), challenge, stored, user.id), 'signature_invalid');
  });

  it('accepts an authenticator without a counter (always 0, as synced passkeys do)', async () => {
    const { key, credential } = await enrolled();
    for (let round = 0; round < 2; round += 1) {
      const { options, challenge } = await authenticationOptions(rp, [credential]);
      const result = await verifyAuthentication(rp, key.get(options, { freezeCounter: true }), challenge, credential, user.id);
      assert.equal(result.newCounter, 0);
    }
  });

  it("refuses another credential's assertion, one signed by another key under this id, and another user's handle", async () => {
    const mine = await enrolled();
    const theirs = await enrolled();
    const { options, challenge } = await authenticationOptions(rp, []);
    const theirAssertion = theirs.key.get(options);
    await refused(verifyAuthentication(rp, theirAssertion, challenge, mine.credential, user.id), 'credential_mismatch');
    const relabelled = mutated(theirAssertion, (copy) => {
      copy.id = mine.credential.credentialId;
      copy.rawId = mine.credential.credentialId;
    });
    await refused(verifyAuthentication(rp, relabelled, challenge, mine.credential, user.id), 'signature_invalid');
    await refused(verifyAuthentication(rp, mine.key.get(options), challenge, mine.credential, 'ffffffffffff'), 'credential_mismatch');
  });

  it('refuses malformed shapes and contents; credentialIdOf finds no id in a bad shape', async () => {
    const { key, credential } = await enrolled();
    const { options, challenge } = await authenticationOptions(rp, [credential]);
    const good = key.get(options);
    const badShapes: unknown[] = [
      null,
      'a string',
      [],
      mutated(good, (copy) => delete copy.id),
      mutated(good, (copy) => delete copy.rawId),
      mutated(good, (copy) => delete copy.response.signature),
      mutated(good, (copy) => delete copy.response.authenticatorData),
      mutated(good, (copy) => (copy.type = 'otp')),
      mutated(good, (copy) => (copy.extra = 1)),
      mutated(good, (copy) => (copy.response.transports = ['usb'])),
      mutated(good, (copy) => (copy.response.signature = 'A'.repeat(2049))),
      mutated(good, (copy) => (copy.response.signature = '')),
      mutated(good, (copy) => (copy.response.userHandle = 'A'.repeat(89))),
      mutated(good, (copy) => (copy.response.userHandle = null)),
    ];
    for (const shape of badShapes) {
      assert.equal(credentialIdOf(shape), undefined);
      await refused(verifyAuthentication(rp, shape, challenge, credential, user.id), 'malformed');
    }
    const badContents = [
      mutated(good, (copy) => (copy.response.authenticatorData = 'AAAA')),
      mutated(good, (copy) => (copy.response.clientDataJSON = encodedJson('[1,2]'))),
      // An id that differs from rawId passes the shape but not the library.
      mutated(good, (copy) => (copy.rawId = 'AAAA')),
    ];
    for (const shape of badContents) await refused(verifyAuthentication(rp, shape, challenge, credential, user.id), 'malformed');
    assert.deepEqual(await verifyAuthentication(rp, good, challenge, credential, user.id), { newCounter: 1, userVerified: true });
  });
});
