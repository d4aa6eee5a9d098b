import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { Secret, URI } from 'otpauth';
import { acceptedTotpStep, newTotpSeed, totpCode, totpProvisioning } from './totp.ts';

const stepMs = 30_000;
// RFC 6238 appendix B: the SHA-1 test seed, and T = 59 s gives 94287082 (8 digits); 6 digits: the last six.
const rfcSeed = Buffer.from('12345678901234567890');
const rfcTime = new Date(59_000);
// One second into step 1_000_000 (a fixed, round point in time).
const now = new Date(1_000_000 * stepMs + 1000);
const stepNow = 1_000_000;
const at = (step: number) => new Date(step * stepMs + 1000);

/** RFC 4226 section 5.3 by hand: an independent check of the library's codes. */
function referenceCode(seed: Buffer, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', seed).update(counter).digest();
  const offset = (mac.at(-1) ?? 0) & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

describe('totp', () => {
  it('computes RFC 6238 codes (SHA-1, 6 digits, 30 s) and accepts them', () => {
    assert.equal(totpCode(rfcSeed, rfcTime), '287082');
    assert.equal(acceptedTotpStep(rfcSeed, '287082', rfcTime, null), 1);
    const seed = newTotpSeed();
    assert.equal(seed.length, 20);
    assert.notDeepEqual(seed, newTotpSeed());
    assert.equal(totpCode(seed, now), referenceCode(seed, stepNow));
    assert.equal(acceptedTotpStep(seed, totpCode(seed, now), now, null), stepNow);
  });

  it('accepts the previous and the next step (clock drift), and nothing two steps away', () => {
    const seed = newTotpSeed();
    assert.equal(acceptedTotpStep(seed, referenceCode(seed, stepNow - 1), now, null), stepNow - 1);
    assert.equal(acceptedTotpStep(seed, referenceCode(seed, stepNow + 1), now, null), stepNow + 1);
    for (const step of [stepNow - 2, stepNow + 2, stepNow - 10]) {
      const code = referenceCode(seed, step);
      // A six-digit code of another step can collide with one inside the window (one in 10^6 per step).
      if ([-1, 0, 1].some((delta) => referenceCode(seed, stepNow + delta) === code)) continue;
      assert.equal(acceptedTotpStep(seed, code, now, null), undefined, `step ${step - stepNow} is outside the window`);
    }
  });

  it('a step is accepted once: the same code again, or any code of that step or an earlier one, is refused', () => {
    const seed = newTotpSeed();
    const accepted = acceptedTotpStep(seed, totpCode(seed, now), now, null);
    assert.equal(accepted, stepNow);
    assert.equal(acceptedTotpStep(seed, totpCode(seed, now), now, accepted), undefined, 'replay of the same code');
    assert.equal(acceptedTotpStep(seed, referenceCode(seed, stepNow - 1), now, accepted), undefined, 'the previous step after the current one');
    // Later, the code of the next step: accepted; then the step it moved past is refused.
    const later = at(stepNow + 1);
    const next = acceptedTotpStep(seed, totpCode(seed, later), later, accepted);
    assert.equal(next, stepNow + 1);
    assert.equal(acceptedTotpStep(seed, referenceCode(seed, stepNow), later, next), undefined, 'an older step after a newer one');
  });

  it('a code from the next step taken early blocks the current step', () => {
    const seed = newTotpSeed();
    const ahead = acceptedTotpStep(seed, referenceCode(seed, stepNow + 1), now, null);
    assert.equal(ahead, stepNow + 1);
    assert.equal(acceptedTotpStep(seed, totpCode(seed, now), now, ahead), undefined);
    assert.equal(acceptedTotpStep(seed, referenceCode(seed, stepNow + 2), at(stepNow + 2), ahead), stepNow + 2);
  });

  it('refuses malformed codes and the code of another seed', () => {
    const seed = newTotpSeed();
    const code = totpCode(seed, now);
    for (const malformed of ['', '12345', '1234567', `${code} `, ` ${code}`, `${code.slice(0, 3)} ${code.slice(3)}`, 'abcdef', '12345a', '１２３４５６', '-12345', '+12345', '1e5000', `${code}\n`]) {
      assert.equal(acceptedTotpStep(seed, malformed, now, null), undefined, JSON.stringify(malformed));
    }
    const other = newTotpSeed();
    if (![-1, 0, 1].some((delta) => referenceCode(other, stepNow + delta) === code)) assert.equal(acceptedTotpStep(other, code, now, null), undefined);
  });

  it('provisioning gives the seed in base32 and an otpauth URI that an app reads back to the same codes', () => {
    const seed = newTotpSeed();
    const { secret, otpauthUri } = totpProvisioning(seed, 'Bulwark', 'ada@example.org');
    assert.deepEqual(Buffer.from(Secret.fromBase32(secret).bytes), seed);
    const parsed = URI.parse(otpauthUri);
    assert.equal(parsed.issuer, 'Bulwark');
    assert.equal(parsed.label, 'ada@example.org');
    assert.ok(otpauthUri.startsWith('otpauth://totp/'));
    assert.equal(parsed.generate({ timestamp: now.getTime() }), totpCode(seed, now));
  });
});
