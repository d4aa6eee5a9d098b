import { createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';

/** An agent's public key as it pairs: raw 32 bytes of an Ed25519 (signing) or X25519 (key agreement) key. */
type AgentKeyType = 'ed25519' | 'x25519';

const p = 2n ** 255n - 19n;
// RFC 8032 section 5.1: d = -121665 / 121666 (mod p).
const d = mod(-121665n * inverse(121666n));
const sqrtMinusOne = power(2n, (p - 1n) / 4n);

function mod(value: bigint): bigint {
  const rest = value % p;
  return rest < 0n ? rest + p : rest;
}

function power(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let square = mod(base);
  for (let rest = exponent; rest > 0n; rest >>= 1n) {
    if ((rest & 1n) === 1n) result = mod(result * square);
    square = mod(square * square);
  }
  return result;
}

function inverse(value: bigint): bigint {
  return power(value, p - 2n);
}

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let index = bytes.length - 1; index >= 0; index -= 1) value = (value << 8n) | BigInt(bytes[index] ?? 0);
  return value;
}

function toLittleEndian(value: bigint): Buffer {
  const bytes = Buffer.alloc(32);
  let rest = value;
  for (let index = 0; index < 32; index += 1) {
    bytes[index] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

/**
 * X25519 with a fresh scalar: OpenSSL refuses the all-zero shared secret, which is what a point of small
 * order (in the 8-torsion, clamped scalars being multiples of 8) always yields (RFC 7748 section 6.1).
 */
function hasLargeOrder(u: Buffer): boolean {
  const ephemeral = generateKeyPairSync('x25519');
  try {
    diffieHellman({ privateKey: ephemeral.privateKey, publicKey: createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: u.toString('base64url') }, format: 'jwk' }) });
    return true;
  } catch {
    return false;
  }
}

/**
 * Node imports any 32 bytes as an Ed25519 key without checking them, and no dependency of ours decodes
 * points: this is the decoding of RFC 8032 section 5.1.3 (canonical y, x recovered from the curve equation,
 * no negative zero). A point that decodes is then mapped to its Montgomery form, u = (1 + y) / (1 - y)
 * (RFC 7748 section 4.1), whose small-order test OpenSSL makes.
 */
function isEd25519Point(bytes: Buffer): boolean {
  const encoded = Buffer.from(bytes);
  const sign = (encoded[31] ?? 0) >> 7;
  encoded[31] = (encoded[31] ?? 0) & 0x7f;
  const y = littleEndian(encoded);
  if (y >= p) return false;
  const u = mod(y * y - 1n);
  const v = mod(d * y * y + 1n);
  let x = mod(u * power(v, 3n) * power(u * power(v, 7n), (p - 5n) / 8n));
  const check = mod(v * x * x);
  if (check === mod(-u)) x = mod(x * sqrtMinusOne);
  else if (check !== u) return false;
  if (x === 0n && sign === 1) return false;
  // y = 1 is the neutral element, of order 1; every other point has a Montgomery image.
  if (y === 1n) return false;
  return hasLargeOrder(toLittleEndian(mod((1n + y) * inverse(1n - y))));
}

/** Whether `raw` is a usable public key of that type: 32 bytes, on the curve, not of small order. */
export function isValidAgentKey(type: AgentKeyType, raw: Buffer): boolean {
  if (raw.length !== 32) return false;
  // Every 32 bytes name an X25519 u-coordinate (of the curve or its twist); only small orders are refused.
  return type === 'x25519' ? hasLargeOrder(raw) : isEd25519Point(raw);
}
