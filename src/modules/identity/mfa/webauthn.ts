import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { COSEALG, decodeClientDataJSON, isoBase64URL } from '@simplewebauthn/server/helpers';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { secretsEqual } from '../../../platform/secret-compare.ts';

/**
 * WebAuthn (passkeys and security keys) ceremonies over @simplewebauthn/server. Pure protocol: the caller
 * stores credentials and challenges (single use, expiring after `ceremonyTimeoutMs`), looks the credential up
 * (`credentialIdOf`) and saves the counter that `verifyAuthentication` returns with a compare-and-set.
 * Every refusal is a `WebAuthnRefusal` with a stable reason; the library's own error, whose message may
 * quote the challenge, stays in `cause`.
 */

/** The relying party as configured: `rpId` must be the origins' host or a registrable suffix of it. */
export interface WebAuthnRelyingParty {
  rpId: string;
  rpName: string;
  origins: string[];
}

/** What the caller keeps per credential. `publicKey` is the COSE key, not secret. */
export interface StoredCredential {
  /** base64url, unpadded. */
  credentialId: string;
  publicKey: Buffer;
  counter: number;
  transports: string[];
}

export type WebAuthnRefusalReason =
  | 'malformed' // not a response this ceremony accepts: shape, encoding, type, algorithm, attestation
  | 'challenge_mismatch'
  | 'origin_mismatch' // includes a ceremony run inside another site's frame
  | 'rp_mismatch' // the authenticator data is for another RP ID
  | 'credential_mismatch' // the assertion is for another credential or another user
  | 'signature_invalid'
  | 'user_not_present'
  | 'counter_regressed'; // the signature is good but the counter did not increase: a cloned authenticator

const refusalMessages: Record<WebAuthnRefusalReason, string> = {
  malformed: 'The WebAuthn response is malformed.',
  challenge_mismatch: 'The WebAuthn response answers another challenge.',
  origin_mismatch: 'The WebAuthn response comes from an origin that is not allowed.',
  rp_mismatch: 'The WebAuthn response is for another relying party.',
  credential_mismatch: 'The WebAuthn response is for another credential.',
  signature_invalid: 'The WebAuthn signature is invalid.',
  user_not_present: 'The authenticator did not confirm user presence.',
  counter_regressed: 'The authenticator signature counter did not increase.',
};

/** A refused ceremony. The message is fixed per reason: safe to log and to send. */
export class WebAuthnRefusal extends Error {
  readonly reason: WebAuthnRefusalReason;
  constructor(reason: WebAuthnRefusalReason, options?: { cause?: unknown }) {
    super(refusalMessages[reason], options);
    this.name = 'WebAuthnRefusal';
    this.reason = reason;
  }
}

/**
 * How long the browser lets the user take, in ms; challenges should expire with it. WebAuthn L3 section
 * 15.1 recommends 5 to 10 minutes when user verification may be asked for.
 */
export const ceremonyTimeoutMs = 300_000;

// Offered and accepted, most preferred first. Pinned rather than the library default, which adds ML-DSA
// when the runtime has it.
const algorithms = [COSEALG.ES256, COSEALG.EdDSA, COSEALG.RS256];

// Sizes: a credential id is at most 1023 bytes (L3 section 7.1; 1364 base64url characters);
// a user handle at most 64 bytes. clientDataJSON is a few hundred bytes; an attestation object with a
// certificate chain (TPM, packed) a few KiB. The bounds are generous for those and still stop an oversized
// body from reaching the decoders.
const base64url = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^[A-Za-z0-9_-]+$' });
const credentialId = base64url(1364);
const clientDataJSON = base64url(4096);
const attestationObject = base64url(32_768);
const authenticatorData = base64url(8192);
// Browsers may report transports newer than this code; they are kept for the options, not interpreted.
const token = Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z][a-z0-9-]*$' });

// Only the client extensions a browser reports for what these options ask (credProps) or for legacy U2F
// credentials (appid, appidExclude); anything else is refused rather than passed along unread.
const clientExtensionResults = Type.Object(
  {
    credProps: Type.Optional(Type.Object({ rk: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
    appid: Type.Optional(Type.Boolean()),
    appidExclude: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const credentialFields = {
  id: credentialId,
  rawId: credentialId,
  type: Type.Literal('public-key'),
  authenticatorAttachment: Type.Optional(Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')])),
  clientExtensionResults,
};

/** `PublicKeyCredential.toJSON()` of `navigator.credentials.create()`: the body of the registration route. */
export const registrationResponseSchema = Type.Object(
  {
    ...credentialFields,
    response: Type.Object(
      {
        clientDataJSON,
        attestationObject,
        authenticatorData: Type.Optional(authenticatorData),
        transports: Type.Optional(Type.Array(token, { maxItems: 8 })),
        publicKeyAlgorithm: Type.Optional(Type.Integer({ minimum: -65_536, maximum: 65_535 })),
        publicKey: Type.Optional(base64url(8192)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type RegistrationResponse = Static<typeof registrationResponseSchema>;

/** `PublicKeyCredential.toJSON()` of `navigator.credentials.get()`: the body of the authentication route. */
export const authenticationResponseSchema = Type.Object(
  {
    ...credentialFields,
    response: Type.Object(
      {
        clientDataJSON,
        authenticatorData,
        signature: base64url(2048),
        userHandle: Type.Optional(base64url(88)),
        attestationObject: Type.Optional(attestationObject),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type AuthenticationResponse = Static<typeof authenticationResponseSchema>;

const registrationResponseCheck = Compile(registrationResponseSchema);
const authenticationResponseCheck = Compile(authenticationResponseSchema);

/** The user handle the options carry: the user id's UTF-8 bytes (an opaque random id, no personal data). */
function userHandleOf(userId: string): Uint8Array<ArrayBuffer> {
  const handle = new TextEncoder().encode(userId);
  // L3 section 5.4.3: at most 64 bytes; a browser would reject longer options.
  if (handle.length === 0 || handle.length > 64) throw new RangeError('A WebAuthn user handle is 1 to 64 bytes.');
  return handle;
}

function descriptorsOf(credentials: StoredCredential[]): { id: string; transports: string[] }[] {
  return credentials.map((credential) => ({ id: credential.credentialId, transports: credential.transports }));
}

/**
 * Options for `navigator.credentials.create()`. The caller stores `challenge` for this user's ceremony.
 *
 * @example
 * const { options, challenge } = await registrationOptions(rp, { id: user.id, name: user.email, displayName }, factors);
 */
export async function registrationOptions(
  rp: WebAuthnRelyingParty,
  user: { id: string; name: string; displayName: string },
  existing: StoredCredential[],
): Promise<{ options: PublicKeyCredentialCreationOptionsJSON; challenge: string }> {
  const options = await generateRegistrationOptions({
    rpName: rp.rpName,
    rpID: rp.rpId,
    userID: userHandleOf(user.id),
    userName: user.name,
    userDisplayName: user.displayName,
    timeout: ceremonyTimeoutMs,
    attestationType: 'none',
    // A credential the user already has is not registered twice (the authenticator refuses).
    excludeCredentials: descriptorsOf(existing),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    supportedAlgorithmIDs: algorithms,
  });
  return { options, challenge: options.challenge };
}

/** Options for `navigator.credentials.get()`: the user's passkeys are the allowed credentials (the login knows the user). */
export async function authenticationOptions(
  rp: WebAuthnRelyingParty,
  allowed: StoredCredential[],
): Promise<{ options: PublicKeyCredentialRequestOptionsJSON; challenge: string }> {
  const options = await generateAuthenticationOptions({
    rpID: rp.rpId,
    allowCredentials: descriptorsOf(allowed),
    timeout: ceremonyTimeoutMs,
    userVerification: 'preferred',
  });
  return { options, challenge: options.challenge };
}

/** The credential id of an authentication response, to look the stored credential up; undefined if malformed. */
export function credentialIdOf(response: unknown): string | undefined {
  return authenticationResponseCheck.Check(response) ? response.id : undefined;
}

/**
 * Checks a registration response against the challenge issued for it and returns the credential to store.
 * Attestation is 'none': the authenticator's make is not checked, only that it holds the key. The caller
 * refuses a credential id that is already registered (L3 section 7.1), to any user.
 */
export async function verifyRegistration(rp: WebAuthnRelyingParty, response: unknown, expectedChallenge: string): Promise<StoredCredential> {
  if (!registrationResponseCheck.Check(response)) throw new WebAuthnRefusal('malformed');
  checkClientData(response.response.clientDataJSON);
  const challenge = challengeCheck(expectedChallenge);
  let result;
  try {
    result = await verifyRegistrationResponse({
      response,
      expectedChallenge: challenge.matches,
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      requireUserPresence: true,
      // 'preferred' in the options: a key without a PIN or biometric is still a second factor.
      requireUserVerification: false,
      supportedAlgorithmIDs: algorithms,
    });
  } catch (error) {
    throw refusalOf(error, challenge.mismatched);
  }
  if (!result.verified) throw new WebAuthnRefusal('signature_invalid');
  const { credential } = result.registrationInfo;
  // The library takes the id from the authenticator data; the one the browser will present must be the same.
  if (credential.id !== response.id) throw new WebAuthnRefusal('malformed');
  return {
    credentialId: credential.id,
    publicKey: Buffer.from(credential.publicKey),
    counter: credential.counter,
    transports: response.response.transports ?? [],
  };
}

/**
 * Checks an assertion of `credential` (owned by `userId`) against the challenge issued for it. Returns the
 * counter to store; the caller saves it only if the stored one is unchanged, so two racing assertions
 * cannot both pass. Authenticators without a counter (synced passkeys) report 0 every time: for them replay
 * protection is the single-use challenge alone. `userVerified` says whether the authenticator checked a PIN
 * or biometric; a login by passkey alone (no password) should require it.
 */
export async function verifyAuthentication(
  rp: WebAuthnRelyingParty,
  response: unknown,
  expectedChallenge: string,
  credential: StoredCredential,
  userId: string,
): Promise<{ newCounter: number; userVerified: boolean }> {
  if (!authenticationResponseCheck.Check(response)) throw new WebAuthnRefusal('malformed');
  if (response.id !== credential.credentialId) throw new WebAuthnRefusal('credential_mismatch');
  // L3 section 7.2 step 6: a user handle, when the authenticator returns one, names the credential's owner.
  const { userHandle } = response.response;
  if (userHandle !== undefined && userHandle !== isoBase64URL.fromBuffer(userHandleOf(userId))) {
    throw new WebAuthnRefusal('credential_mismatch');
  }
  checkClientData(response.response.clientDataJSON);
  const challenge = challengeCheck(expectedChallenge);
  let result;
  try {
    result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: challenge.matches,
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      // The library compares counters before it checks the signature, so anyone could make a genuine
      // authenticator look cloned with an unsigned low counter. A zero here turns its check off; the
      // comparison below runs on signed data only.
      credential: { id: credential.credentialId, publicKey: Uint8Array.from(credential.publicKey), counter: 0, transports: credential.transports },
      requireUserVerification: false,
    });
  } catch (error) {
    throw refusalOf(error, challenge.mismatched);
  }
  if (!result.verified) throw new WebAuthnRefusal('signature_invalid');
  const { newCounter, userVerified } = result.authenticationInfo;
  // L3 section 6.1.1: when either counter is non-zero, a counter that does not grow means a second copy.
  if ((newCounter > 0 || credential.counter > 0) && newCounter <= credential.counter) {
    throw new WebAuthnRefusal('counter_regressed');
  }
  return { newCounter, userVerified };
}

/** A challenge comparison for the library that also tells afterwards whether it was the one that failed. */
function challengeCheck(expected: string): { matches: (presented: string) => boolean; readonly mismatched: boolean } {
  let mismatched = false;
  return {
    matches: (presented) => {
      mismatched = !secretsEqual(presented, expected);
      return !mismatched;
    },
    get mismatched() {
      return mismatched;
    },
  };
}

// What this module reads of clientDataJSON before the library does. Open to other members: browsers add
// some (Chrome sometimes sends `other_keys_can_be_added_here`), and the signature covers them all.
const clientDataCheck = Compile(
  Type.Object({
    type: Type.String(),
    challenge: Type.String(),
    origin: Type.String(),
    crossOrigin: Type.Optional(Type.Boolean()),
    topOrigin: Type.Optional(Type.String()),
  }),
);

/**
 * Refuses a ceremony in a frame: Bulwark's pages are never framed by another site (L3 sections 7.1 and 7.2
 * leave `crossOrigin` and `topOrigin` to the RP). The library checks neither when registering, and when
 * authenticating lets `crossOrigin` pass if the browser leaves out `topOrigin` (Safari does).
 */
function checkClientData(encoded: string): void {
  let clientData: unknown;
  try {
    clientData = decodeClientDataJSON(encoded);
  } catch (error) {
    throw new WebAuthnRefusal('malformed', { cause: error });
  }
  if (!clientDataCheck.Check(clientData)) throw new WebAuthnRefusal('malformed');
  if (clientData.crossOrigin === true || clientData.topOrigin !== undefined) throw new WebAuthnRefusal('origin_mismatch');
}

// The library throws plain Errors; these are the ones that name a refusal. The prefixes are its fixed text
// (what follows may be the attacker's); a message they do not match is a malformed response. The tests pin
// each one, so an upgrade that rewords them fails there.
const libraryRefusals: readonly (readonly [RegExp, WebAuthnRefusalReason])[] = [
  [/^Unexpected (registration|authentication) response origin /, 'origin_mismatch'],
  [/^(User presence was required|User not present during authentication)/, 'user_not_present'],
];

function refusalOf(error: unknown, challengeMismatched: boolean): WebAuthnRefusal {
  if (challengeMismatched) return new WebAuthnRefusal('challenge_mismatch', { cause: error });
  if (!(error instanceof Error)) return new WebAuthnRefusal('malformed', { cause: error });
  if (error.name === 'UnexpectedRPIDHash') return new WebAuthnRefusal('rp_mismatch', { cause: error });
  const reason = libraryRefusals.find(([pattern]) => pattern.test(error.message))?.[1] ?? 'malformed';
  return new WebAuthnRefusal(reason, { cause: error });
}
