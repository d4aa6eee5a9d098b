import { Type } from 'typebox';
import { idPattern } from '../../../platform/ids.ts';
import { anyJsonObject } from '../../../platform/http/route-kit.ts';
import { tokenResponse } from '../../sessions/auth-schemas.ts';
import { authenticationResponseSchema, registrationResponseSchema } from './webauthn.ts';

export const mfaMode = Type.Union([Type.Literal('off'), Type.Literal('optional'), Type.Literal('required'), Type.Literal('required_for_admins')], {
  description:
    '`off`: no second factor is asked for or can be enrolled. `optional`: asked for when the user has one. `required`: every user must have one (the first login after this enrols it). `required_for_admins`: users holding an administrative permission must.',
});

export const mfaPolicy = Type.Object({ mode: mfaMode, updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]) });
export const mfaPolicyBody = Type.Object({ mode: mfaMode }, { additionalProperties: false });

const method = Type.Union([Type.Literal('totp'), Type.Literal('webauthn'), Type.Literal('recovery-code')]);
const challengeToken = Type.String({ minLength: 1, maxLength: 128, description: 'The `challengeToken` of the login answer (`bwm_...`); valid for 5 minutes.' });
const factorName = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S', description: 'A name the user recognises the factor by.' });
const totpCode = Type.String({ minLength: 1, maxLength: 16, description: 'The 6-digit code the authenticator app shows.' });
const assertionOrRegistration = Type.Union([authenticationResponseSchema, registrationResponseSchema], {
  description: "The browser's `PublicKeyCredential` as JSON (`credential.toJSON()`): an assertion for a `verify` challenge, a registration for an `enroll` one.",
});

export const mfaChallenge = Type.Object({
  mfaRequired: Type.Literal(true),
  challengeToken: Type.String(),
  purpose: Type.Union([Type.Literal('verify'), Type.Literal('enroll')], {
    description: '`verify`: prove one of `methods`. `enroll`: the policy requires a factor the user does not have yet: enrol one (POST /v1/auth/mfa/totp or /v1/auth/mfa/webauthn/options), then prove it.',
  }),
  methods: Type.Array(method),
  expiresAt: Type.String({ format: 'date-time' }),
});

export const loginAnswer = Type.Union([tokenResponse, mfaChallenge]);

export const mfaLoginBody = Type.Union([
  Type.Object({ challengeToken, method: Type.Literal('totp'), code: totpCode }, { additionalProperties: false }),
  Type.Object({ challengeToken, method: Type.Literal('recovery-code'), code: Type.String({ minLength: 1, maxLength: 32, description: 'One of the recovery codes (`xxxxx-xxxxx`); each works once.' }) }, { additionalProperties: false }),
  Type.Object({ challengeToken, method: Type.Literal('webauthn'), credential: assertionOrRegistration }, { additionalProperties: false }),
]);

const recoveryCodes = Type.Array(Type.String(), { description: 'Shown this once: store them somewhere safe. Each logs in once when the other factors are lost.' });

export const mfaTokenResponse = Type.Object({ ...tokenResponse.properties, recoveryCodes: Type.Optional(recoveryCodes) });

export const challengeBody = Type.Object({ challengeToken }, { additionalProperties: false });
export const challengeTotpBody = Type.Object({ challengeToken, name: Type.Optional(factorName) }, { additionalProperties: false });

export const totpEnrolment = Type.Object({
  factorId: Type.String(),
  secret: Type.String({ description: 'The base32 seed, for typing into the app.' }),
  otpauthUri: Type.String({ description: 'The `otpauth://totp/...` URI, for a QR code.' }),
});

export const webauthnOptions = Type.Object({ options: anyJsonObject({ description: 'Pass to `navigator.credentials.create()` or `.get()` (as `publicKey`, after decoding the base64url members).' }) });

export const factor = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('totp'), Type.Literal('webauthn')]),
  name: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('active')]),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const mfaOverview = Type.Object({ policy: mfaMode, factors: Type.Array(factor), recoveryCodesLeft: Type.Integer() });
export const enrolled = Type.Object({ factor, recoveryCodes: Type.Optional(recoveryCodes) });
export const recoveryCodesAnswer = Type.Object({ recoveryCodes });

export const startTotpBody = Type.Object({ name: Type.Optional(factorName) }, { additionalProperties: false });
export const confirmTotpBody = Type.Object({ code: totpCode }, { additionalProperties: false });
export const registerWebauthnBody = Type.Object({ credential: registrationResponseSchema, name: Type.Optional(factorName) }, { additionalProperties: false });
export const factorParams = Type.Object({ factorId: Type.String({ pattern: idPattern, description: 'Factor id.' }) }, { additionalProperties: false });
export const resetAnswer = Type.Object({ removed: Type.Integer({ description: 'How many factors were removed.' }) });
