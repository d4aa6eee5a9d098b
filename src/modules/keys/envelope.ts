import { createCipheriv, createDecipheriv, type KeyObject, randomFillSync } from 'node:crypto';

/**
 * The envelope: the one format in which Bulwark stores encrypted columns and answers the transit API
 * (DESIGN.md invariant 2, STYLE.md rule 9). Byte by byte, in `docs/envelope-format.md`:
 *
 *   offset  size  field
 *   0       1     format version, 1
 *   1       1     algorithm, 1 = AES-256-GCM (96-bit nonce, 128-bit tag)
 *   2       4     data key version, uint32 big-endian, 1 .. 2^32-1
 *   6       12    nonce, random
 *   18      n     ciphertext (same length as the plaintext)
 *   18+n    16    GCM authentication tag
 *
 * The associated data binds the ciphertext to its place (tenant, table, column, row, optional caller
 * context) and covers the header, so a ciphertext moved anywhere else, or a header edited to name
 * another key version, fails to open.
 */

export const envelopeFormatVersion = 1;
export const envelopeAlgorithmAes256Gcm = 1;
export const envelopeHeaderBytes = 6;
export const envelopeNonceBytes = 12;
export const envelopeTagBytes = 16;
/** Bytes an envelope adds to its plaintext. */
export const envelopeOverheadBytes = envelopeHeaderBytes + envelopeNonceBytes + envelopeTagBytes;
export const envelopeKeyBytes = 32;
export const maxEnvelopeKeyVersion = 0xffff_ffff;

const cipherName = 'aes-256-gcm';
const gcmOptions = { authTagLength: envelopeTagBytes };
const nonceOffset = envelopeHeaderBytes;
const bodyOffset = envelopeHeaderBytes + envelopeNonceBytes;
/** Domain separation: these AAD bytes can never be mistaken for another Bulwark structure's. */
const aadLabel = Buffer.from('bulwark/envelope/v1', 'latin1');
const lengthPrefixBytes = 4;

/** Where a ciphertext lives. Every field is bound into the associated data. */
export interface EnvelopeContext {
  tenantId: string;
  /** The table (or, for records, the table and collection as the caller chooses to name it). */
  table: string;
  column: string;
  rowId: string;
  /** The transit API's optional caller context. A string is taken as UTF-8; absent and empty are the same. */
  extra?: Buffer | string | undefined;
}

export type EnvelopeErrorReason =
  | 'malformed' // not an envelope: too short, a bad transit text, a context that cannot be encoded
  | 'unsupported_format' // a format version or algorithm this build does not know
  | 'unknown_key_version' // the key version is not (or no longer) available to decrypt
  | 'authentication_failed'; // wrong key, wrong context (moved ciphertext), or tampering

/**
 * Every failure to open or parse an envelope. Messages name the reason and sizes or versions, never
 * plaintext, key material or context values, so they are safe to log.
 */
export class EnvelopeError extends Error {
  readonly reason: EnvelopeErrorReason;
  constructor(reason: EnvelopeErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnvelopeError';
    this.reason = reason;
  }
}

/**
 * A 256-bit data key. Prefer a KeyObject (`createSecretKey(bytes)`, made once when the key is unwrapped and
 * cached): on Node 24 `createCipheriv` first probes a Buffer key as a KeyObject and a CryptoKey, through a
 * thrown and caught exception, which made a 4 KiB encrypt + decrypt 2-4x slower (bench/envelope.ts measures
 * both). Trade-off: a KeyObject's bytes live outside the JS heap and cannot be zeroed from JS; they are freed
 * when the object is collected.
 */
export type EnvelopeKey = KeyObject | Buffer;

/**
 * Returns the 32-byte data key for a key version, or `undefined` when the version is unknown, retired
 * (below the minimum decryption version) or destroyed: `open` then fails with `unknown_key_version`.
 * Anything the lookup throws (a KMS that is down, a revoked customer key) propagates unchanged, so the
 * caller can answer it with its own error.
 */
export type KeyLookup = (version: number) => EnvelopeKey | undefined;
export type AsyncKeyLookup = (version: number) => EnvelopeKey | undefined | Promise<EnvelopeKey | undefined>;

// Nonces come from a pooled CSPRNG buffer: one randomFillSync per 1024 seals instead of one per seal
// (the same trade-off as ids.ts and Node's randomUUID). Each slice is handed out once.
const noncePool = Buffer.alloc(envelopeNonceBytes * 1024);
let noncePoolOffset = noncePool.length;

function nextNonceInto(target: Buffer, offset: number): void {
  if (noncePoolOffset === noncePool.length) {
    randomFillSync(noncePool);
    noncePoolOffset = 0;
  }
  noncePool.copy(target, offset, noncePoolOffset, noncePoolOffset + envelopeNonceBytes);
  noncePoolOffset += envelopeNonceBytes;
}

// The AAD is written into one reusable buffer, saving an allocation per seal and per open on the hot
// path: setAAD passes it to OpenSSL synchronously, so it is free again before seal/open return. A larger
// AAD (a long transit `extra`) gets a buffer of its own rather than growing this one for good.
const aadScratch = Buffer.alloc(1024);
aadLabel.copy(aadScratch, 0);
const aadFixedBytes = aadLabel.length + envelopeHeaderBytes;

function writeField(aad: Buffer, offset: number, value: string | Buffer): number {
  const length = typeof value === 'string' ? aad.write(value, offset + lengthPrefixBytes, 'utf8') : value.copy(aad, offset + lengthPrefixBytes);
  aad.writeUInt32BE(length, offset);
  return offset + lengthPrefixBytes + length;
}

/**
 * The associated data:
 *   "bulwark/envelope/v1" || header (6 bytes) || lp(tenantId) || lp(table) || lp(column) || lp(rowId) || lp(extra)
 * where lp(x) is the uint32 big-endian byte length of x followed by its bytes (strings as UTF-8).
 * Length prefixes make the encoding injective: table "ab" + column "c" differs from "a" + "bc".
 */
function associatedData(header: Buffer, context: EnvelopeContext): Buffer {
  const { tenantId, table, column, rowId } = context;
  const extra = context.extra ?? '';
  if (!tenantId.isWellFormed() || !table.isWellFormed() || !column.isWellFormed() || !rowId.isWellFormed() || (typeof extra === 'string' && !extra.isWellFormed())) {
    throw new EnvelopeError('malformed', 'the envelope context contains a string that is not well-formed Unicode');
  }
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  const bound = aadFixedBytes + 5 * lengthPrefixBytes + 3 * (tenantId.length + table.length + column.length + rowId.length) + (typeof extra === 'string' ? 3 * extra.length : extra.length);
  const aad = bound <= aadScratch.length ? aadScratch : Buffer.allocUnsafe(bound);
  if (aad !== aadScratch) aadLabel.copy(aad, 0);
  header.copy(aad, aadLabel.length, 0, envelopeHeaderBytes);
  let offset = writeField(aad, aadFixedBytes, tenantId);
  offset = writeField(aad, offset, table);
  offset = writeField(aad, offset, column);
  offset = writeField(aad, offset, rowId);
  offset = writeField(aad, offset, extra);
  return aad.subarray(0, offset);
}

/**
 * Encrypts `plaintext` under `key` (the tenant data key of version `keyVersion`), bound to `context`.
 * Throws RangeError for a key that is not 32 bytes (from createCipheriv) or a version outside 1 .. 2^32-1
 * (programming errors).
 */
export function seal(key: EnvelopeKey, keyVersion: number, plaintext: Buffer, context: EnvelopeContext): Buffer {
  if (!Number.isInteger(keyVersion) || keyVersion < 1 || keyVersion > maxEnvelopeKeyVersion) {
    throw new RangeError(`an envelope key version must be an integer from 1 to ${maxEnvelopeKeyVersion}`);
  }
  const envelope = Buffer.allocUnsafe(bodyOffset + plaintext.length + envelopeTagBytes);
  envelope[0] = envelopeFormatVersion;
  envelope[1] = envelopeAlgorithmAes256Gcm;
  envelope.writeUInt32BE(keyVersion, 2);
  nextNonceInto(envelope, nonceOffset);
  const cipher = createCipheriv(cipherName, key, envelope.subarray(nonceOffset, bodyOffset), gcmOptions);
  cipher.setAAD(associatedData(envelope, context));
  envelope.set(cipher.update(plaintext), bodyOffset);
  cipher.final(); // GCM is a stream mode: final() yields no bytes, it computes the tag.
  envelope.set(cipher.getAuthTag(), bodyOffset + plaintext.length);
  return envelope;
}

/** Reads and validates the header; the key version is what the caller must look up. */
export function envelopeKeyVersion(ciphertext: Buffer): number {
  if (ciphertext.length < envelopeOverheadBytes) {
    throw new EnvelopeError('malformed', `an envelope has at least ${envelopeOverheadBytes} bytes (got ${ciphertext.length})`);
  }
  const format = ciphertext[0];
  if (format !== envelopeFormatVersion) throw new EnvelopeError('unsupported_format', `unsupported envelope format version ${format ?? '?'}`);
  const algorithm = ciphertext[1];
  if (algorithm !== envelopeAlgorithmAes256Gcm) throw new EnvelopeError('unsupported_format', `unsupported envelope algorithm ${algorithm ?? '?'}`);
  const version = ciphertext.readUInt32BE(2);
  if (version === 0) throw new EnvelopeError('malformed', 'the envelope names key version 0');
  return version;
}

function decrypt(ciphertext: Buffer, context: EnvelopeContext, version: number, key: EnvelopeKey | undefined): Buffer {
  if (key === undefined) throw new EnvelopeError('unknown_key_version', `key version ${version} is not available for decryption`);
  const aad = associatedData(ciphertext, context);
  const tagOffset = ciphertext.length - envelopeTagBytes;
  const decipher = createDecipheriv(cipherName, key, ciphertext.subarray(nonceOffset, bodyOffset), gcmOptions);
  decipher.setAuthTag(ciphertext.subarray(tagOffset));
  decipher.setAAD(aad);
  const plaintext = decipher.update(ciphertext.subarray(bodyOffset, tagOffset));
  try {
    decipher.final();
  } catch {
    // Unauthenticated plaintext never leaves this function (and the cause would add nothing safe).
    plaintext.fill(0);
    throw new EnvelopeError('authentication_failed', 'the envelope does not authenticate: wrong key or context, or it was altered');
  }
  return plaintext;
}

/**
 * Decrypts an envelope sealed for `context`. `keyFor` gets the version named in the header; see
 * KeyLookup for what it returns. Throws EnvelopeError for anything wrong with the envelope.
 */
export function open(ciphertext: Buffer, context: EnvelopeContext, keyFor: KeyLookup): Buffer {
  const version = envelopeKeyVersion(ciphertext);
  return decrypt(ciphertext, context, version, keyFor(version));
}

/** `open` for a key lookup that may have to unwrap the key first (a cache miss goes to the root key provider). */
export async function openAsync(ciphertext: Buffer, context: EnvelopeContext, keyFor: AsyncKeyLookup): Promise<Buffer> {
  const version = envelopeKeyVersion(ciphertext);
  return decrypt(ciphertext, context, version, await keyFor(version));
}

// ---------------------------------------------------------------------------------------------------
// Transit text form: bulwark:v<keyVersion>:<base64url of the binary envelope, no padding>

const transitPattern = /^bulwark:v([1-9][0-9]{0,9}):([A-Za-z0-9_-]+)$/;

/** The transit API's text form, Vault-like: `bulwark:v3:AQEAAAAD...`. */
export function toTransitText(ciphertext: Buffer): string {
  const version = envelopeKeyVersion(ciphertext);
  return `bulwark:v${version}:${ciphertext.toString('base64url')}`;
}

/**
 * Parses the transit text form strictly: the prefix, a canonical decimal version, canonical unpadded
 * base64url (Node's decoder would silently skip stray characters), a valid header, and a header version
 * equal to the `v<N>` in the text. Anything else is `malformed` (or `unsupported_format` for a future format).
 */
export function fromTransitText(text: string): Buffer {
  const match = transitPattern.exec(text);
  const versionText = match?.[1];
  const encoded = match?.[2];
  if (versionText === undefined || encoded === undefined) throw new EnvelopeError('malformed', 'not a bulwark:v<version>:<base64url> ciphertext');
  const ciphertext = Buffer.from(encoded, 'base64url');
  // Rejects a length of 1 mod 4 and non-zero trailing bits: one envelope, one text.
  if (ciphertext.toString('base64url') !== encoded) throw new EnvelopeError('malformed', 'the ciphertext is not canonical base64url');
  const version = envelopeKeyVersion(ciphertext);
  if (String(version) !== versionText) throw new EnvelopeError('malformed', 'the version in the text does not match the envelope header');
  return ciphertext;
}
