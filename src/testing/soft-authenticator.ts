import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

/**
 * A software FIDO2 authenticator and the browser in front of it, for tests: one ES256 (P-256) credential,
 * 'none' attestation, a signature counter, and answers shaped as `PublicKeyCredential.toJSON()` gives them.
 * The CBOR (COSE key, attestation object) is encoded with @simplewebauthn/server's own `isoCBOR` (over
 * @levischuck/tiny-cbor), the encoder the verifier decodes with.
 *
 * @example
 * const key = new SoftAuthenticator({ origin: 'https://app.example', rpId: 'app.example' });
 * const registration = key.create(options);          // RegistrationResponseJSON
 * const assertion = key.get(requestOptions);         // AuthenticationResponseJSON, counter + 1
 * const forged = key.get(requestOptions, { badSignature: true });
 */

/** Ways to misbehave, for negative tests. Each one applies to a single answer. */
export interface Misbehaviour {
  /** The origin the "browser" writes into clientDataJSON. */
  origin?: string;
  /** Hash this RP ID into the authenticator data instead of the real one. */
  rpIdHashOf?: string;
  /** clientDataJSON says the ceremony ran in a cross-origin frame. */
  crossOrigin?: boolean;
  /** clientDataJSON names a top-level origin (a framed ceremony), whatever `crossOrigin` says. */
  topOrigin?: string;
  /** The UP flag; default true. */
  userPresent?: boolean;
  /** The UV flag; default true. */
  userVerified?: boolean;
}

export interface AssertionMisbehaviour extends Misbehaviour {
  /** Sign other bytes than the ones sent: a well-formed signature that does not verify. */
  badSignature?: boolean;
  /** Report the current counter again instead of incrementing it (a cloned authenticator). */
  freezeCounter?: boolean;
}

const flagUserPresent = 0x01;
const flagUserVerified = 0x04;
const flagAttestedData = 0x40;

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

function sha256(data: string | Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export class SoftAuthenticator {
  readonly origin: string;
  readonly rpId: string;
  /** base64url, as the browser reports it. */
  readonly credentialId: string;
  /** The signature counter; starts at 0 and grows by one per assertion. */
  counter = 0;
  private readonly privateKey: KeyObject;
  private readonly cosePublicKey: Uint8Array;
  private readonly spki: Buffer;
  /** The user handle of the registration, returned with each assertion (a discoverable credential). */
  private userHandle: string | undefined;

  constructor(context: { origin: string; rpId: string }) {
    this.origin = context.origin;
    this.rpId = context.rpId;
    this.credentialId = base64url(randomBytes(32));
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = privateKey;
    this.spki = publicKey.export({ format: 'der', type: 'spki' });
    const jwk = publicKey.export({ format: 'jwk' });
    // RFC 9053 section 7.1.1: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y; CTAP2 canonical key order.
    this.cosePublicKey = isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x ?? '', 'base64url')],
        [-3, Buffer.from(jwk.y ?? '', 'base64url')],
      ]),
    );
  }

  /** `navigator.credentials.create({ publicKey: options })`, then `.toJSON()`. */
  create(options: PublicKeyCredentialCreationOptionsJSON, misbehave: Misbehaviour = {}): RegistrationResponseJSON {
    // What a browser and an authenticator refuse before signing anything.
    if (options.rp.id !== undefined && options.rp.id !== this.rpId) throw new Error('SecurityError: the RP ID does not match the origin');
    if (!options.pubKeyCredParams.some((param) => param.alg === -7)) throw new Error('NotSupportedError: ES256 is not offered');
    if (options.excludeCredentials?.some((descriptor) => descriptor.id === this.credentialId)) {
      throw new Error('InvalidStateError: the authenticator already holds an excluded credential');
    }
    this.userHandle = options.user.id;
    const credentialId = Buffer.from(this.credentialId, 'base64url');
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(credentialId.length);
    const authData = Buffer.concat([
      this.authDataPrefix(misbehave, flagAttestedData, this.counter),
      Buffer.alloc(16), // AAGUID: zero, as with 'none' attestation
      idLength,
      credentialId,
      this.cosePublicKey,
    ]);
    const attestationObject = isoCBOR.encode(
      new Map<string, string | Uint8Array | Map<string, never>>([
        ['fmt', 'none'],
        ['attStmt', new Map<string, never>()],
        ['authData', authData],
      ]),
    );
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: { credProps: { rk: true } },
      response: {
        clientDataJSON: this.clientData('webauthn.create', options.challenge, misbehave),
        attestationObject: base64url(attestationObject),
        authenticatorData: base64url(authData),
        transports: ['usb'],
        publicKeyAlgorithm: -7,
        publicKey: base64url(this.spki),
      },
    };
  }

  /** `navigator.credentials.get({ publicKey: options })`, then `.toJSON()`. */
  get(options: PublicKeyCredentialRequestOptionsJSON, misbehave: AssertionMisbehaviour = {}): AuthenticationResponseJSON {
    if (options.rpId !== undefined && options.rpId !== this.rpId) throw new Error('SecurityError: the RP ID does not match the origin');
    const allowed = options.allowCredentials ?? [];
    if (allowed.length > 0 && !allowed.some((descriptor) => descriptor.id === this.credentialId)) {
      throw new Error('NotAllowedError: no allowed credential on this authenticator');
    }
    if (misbehave.freezeCounter !== true) this.counter += 1;
    const authData = this.authDataPrefix(misbehave, 0, this.counter);
    const clientDataJSON = this.clientData('webauthn.get', options.challenge, misbehave);
    // L3 section 6.3.3: the signature covers authenticatorData || SHA-256(clientDataJSON); ECDSA in DER.
    const signed = Buffer.concat([authData, sha256(Buffer.from(clientDataJSON, 'base64url'))]);
    if (misbehave.badSignature === true) signed.writeUInt8(signed.readUInt8(0) ^ 0xff, 0);
    const signature = sign('sha256', signed, { key: this.privateKey, dsaEncoding: 'der' });
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: {},
      response: {
        clientDataJSON,
        authenticatorData: base64url(authData),
        signature: base64url(signature),
        ...(this.userHandle === undefined ? {} : { userHandle: this.userHandle }),
      },
    };
  }

  /** rpIdHash (32) | flags (1) | signCount (4, big-endian): L3 section 6.1. */
  private authDataPrefix(misbehave: Misbehaviour, extraFlags: number, counter: number): Buffer {
    let flags = extraFlags;
    if (misbehave.userPresent !== false) flags |= flagUserPresent;
    if (misbehave.userVerified !== false) flags |= flagUserVerified;
    const counterBytes = Buffer.alloc(4);
    counterBytes.writeUInt32BE(counter);
    return Buffer.concat([sha256(misbehave.rpIdHashOf ?? this.rpId), Buffer.from([flags]), counterBytes]);
  }

  private clientData(type: string, challenge: string, misbehave: Misbehaviour): string {
    const clientData = {
      type,
      challenge,
      origin: misbehave.origin ?? this.origin,
      crossOrigin: misbehave.crossOrigin ?? false,
      ...(misbehave.topOrigin === undefined ? {} : { topOrigin: misbehave.topOrigin }),
    };
    return base64url(Buffer.from(JSON.stringify(clientData)));
  }
}
