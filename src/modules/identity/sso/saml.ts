import { randomBytes, X509Certificate } from 'node:crypto';
import {
  type CacheProvider,
  generateServiceProviderMetadata,
  type Profile,
  SAML,
  SamlStatusError,
  ValidateInResponseTo,
} from '@node-saml/node-saml';
// The same xml2js configuration node-saml reads assertions with, so the checks below see what it saw.
import { parseXml2JsFromString } from '@node-saml/node-saml/lib/xml.js';
import { type Static, Type } from 'typebox';
import type { Clock } from '../../../platform/clock.ts';
import { type ExternalIdentity, SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';

/**
 * SAML 2.0 Web Browser SSO, service-provider side, over @node-saml/node-saml: an HTTP-Redirect AuthnRequest
 * out, an HTTP-POST Response in. Pure protocol: the caller keeps the AuthnRequest id per flow, passes it
 * back as `expected.requestId`, and records `assertionId` until `notOnOrAfter` to refuse replays.
 *
 * node-saml verifies the signatures (only what a signature covers is read), the audience and, in real time,
 * the Conditions window. It leaves unchecked what this file checks on the signed assertion, against the
 * injected clock: Issuer, SubjectConfirmationData (bearer method, Recipient, InResponseTo, NotOnOrAfter,
 * NotBefore), the Conditions window again (node-saml cannot take a clock), the NameID format, and the
 * Response's Status, Destination, Issuer and InResponseTo.
 */

// SAML metadata section 2.3.2: an entityID is at most 1024 characters.
const entityId = Type.String({ minLength: 1, maxLength: 1024, pattern: '^\\S+$' });
const attributeName = Type.String({ minLength: 1, maxLength: 256, pattern: '^\\S+$' });
// One PEM certificate (an IdP signing certificate is 1 to 3 KiB; 16 KiB leaves room for long chains of
// extensions, not for a bundle).
const pemCertificate = Type.String({
  minLength: 1,
  maxLength: 16_384,
  pattern: '^\\s*-----BEGIN CERTIFICATE-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END CERTIFICATE-----\\s*$',
});

/** A tenant's SAML connection, as the SSO service stores it. Check `samlConnectionProblems` too. */
export const samlConnectionConfig = Type.Object(
  {
    idpEntityId: entityId,
    /** The IdP's SingleSignOnService location for the HTTP-Redirect binding. https, or http on loopback. */
    idpSsoUrl: Type.String({ minLength: 1, maxLength: 2048, pattern: '^https?://' }),
    /** The IdP's signing certificates; more than one during a rollover. */
    idpCertificates: Type.Array(pemCertificate, { minItems: 1, maxItems: 4 }),
    /** Require a signature on the Response as well as on the assertion (default false: many IdPs sign only the assertion). */
    wantResponseSigned: Type.Optional(Type.Boolean()),
    /** Accept IdP-initiated (unsolicited) Responses (default false: they cannot be bound to a login flow). */
    allowIdpInitiated: Type.Optional(Type.Boolean()),
    /** NameIDPolicy Format to ask for, and then require; unset lets the IdP choose. */
    nameIdFormat: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: '^urn:\\S+$' })),
    emailAttribute: Type.Optional(attributeName),
    groupsAttribute: Type.Optional(attributeName),
    givenNameAttribute: Type.Optional(attributeName),
    familyNameAttribute: Type.Optional(attributeName),
    /** Allow an http:// SSO URL on a loopback host (a local test IdP). */
    allowInsecureHttp: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type SamlConnectionConfig = Static<typeof samlConnectionConfig>;

/** Bulwark as the SP of one connection; the SSO service derives both from the public base URL. */
export interface SamlServiceProvider {
  entityId: string;
  /** The AssertionConsumerService URL (HTTP-POST binding). */
  acsUrl: string;
}

export type SamlRefusalReason =
  | 'too_large'
  | 'malformed' // not base64, not UTF-8, not well-formed XML, a DTD, or a SAML shape this SP does not read
  | 'unsolicited' // IdP-initiated, and the connection does not allow it
  | 'unsigned' // a signature this SP requires is missing
  | 'signature_invalid' // a signature does not verify with the configured certificates, or wraps something else
  | 'encrypted_assertion' // this SP publishes no encryption key, so an EncryptedAssertion cannot be read
  | 'issuer_mismatch'
  | 'audience_mismatch'
  | 'destination_mismatch'
  | 'recipient_mismatch'
  | 'subject_confirmation_invalid' // no bearer SubjectConfirmation
  | 'in_response_to_mismatch'
  | 'expired'
  | 'not_yet_valid'
  | 'nameid_format_mismatch'
  | 'idp_status'; // the IdP answered with a non-success status

const refusalMessages: Record<SamlRefusalReason, string> = {
  too_large: 'The SAML response is too large.',
  malformed: 'The SAML response is malformed.',
  unsolicited: 'The SAML response answers no sign-in request, and this connection does not accept IdP-initiated sign-in.',
  unsigned: 'The SAML response lacks a required signature.',
  signature_invalid: 'The SAML signature is invalid.',
  encrypted_assertion: 'The SAML assertion is encrypted, and this connection does not accept encrypted assertions.',
  issuer_mismatch: 'The SAML response comes from another identity provider.',
  audience_mismatch: 'The SAML assertion is for another service provider.',
  destination_mismatch: 'The SAML response is addressed to another endpoint.',
  recipient_mismatch: 'The SAML assertion is for another assertion consumer service.',
  subject_confirmation_invalid: 'The SAML assertion has no bearer subject confirmation.',
  in_response_to_mismatch: 'The SAML response answers another sign-in request.',
  expired: 'The SAML assertion has expired.',
  not_yet_valid: 'The SAML assertion is not valid yet.',
  nameid_format_mismatch: 'The SAML NameID has another format than the connection requires.',
  idp_status: 'The identity provider refused the sign-in.',
};

function refusal(reason: SamlRefusalReason, cause?: unknown): SsoProtocolError {
  return new SsoProtocolError(reason, refusalMessages[reason], cause === undefined ? undefined : { cause });
}

/**
 * Accepted difference between the IdP's clock and ours, both ways. A minute absorbs NTP-synchronised hosts
 * and the seconds a browser takes to post the form; the bearer assertion stays a few minutes' credential.
 */
export const samlClockSkewMs = 60_000;

// Bindings section 3.5: a posted Response is one form field. Real ones are 5 to 20 KiB (a few certificates
// and attributes); 256 KiB of base64 is far beyond that and still cheap to refuse unparsed.
const maxResponseBase64Chars = 256 * 1024;
// Bindings section 3.4.3: RelayState MUST NOT exceed 80 bytes.
const maxRelayStateBytes = 80;

const bearerMethod = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const successStatus = 'urn:oasis:names:tc:SAML:2.0:status:Success';

const defaultEmailAttributes = [
  'email',
  'mail',
  'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
  'urn:oid:0.9.2342.19200300.100.1.3',
];
const defaultGivenNameAttributes = ['givenName', 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname', 'urn:oid:2.5.4.42'];
const defaultFamilyNameAttributes = [
  'surname',
  'sn',
  'familyName',
  'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname',
  'urn:oid:2.5.4.4',
];
const defaultGroupsAttribute = 'groups';

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

/**
 * What the schema cannot say about a connection: the SSO URL's scheme and host, and whether each certificate
 * parses. Empty when the connection is usable; the messages name the field and hold no certificate.
 */
export function samlConnectionProblems(config: SamlConnectionConfig): string[] {
  const problems: string[] = [];
  let url: URL | undefined;
  try {
    url = new URL(config.idpSsoUrl);
  } catch {
    problems.push('idpSsoUrl is not a URL.');
  }
  if (url !== undefined) {
    const insecureAllowed = config.allowInsecureHttp === true && isLoopback(url.hostname);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && insecureAllowed)) {
      problems.push('idpSsoUrl must use https (http only on a loopback host with allowInsecureHttp).');
    }
    if (url.username !== '' || url.password !== '') problems.push('idpSsoUrl must not carry credentials.');
    if (url.hash !== '') problems.push('idpSsoUrl must not have a fragment.');
  }
  config.idpCertificates.forEach((pem, index) => {
    try {
      new X509Certificate(pem);
    } catch {
      problems.push(`idpCertificates[${index}] is not an X.509 certificate.`);
    }
  });
  return problems;
}

// The parts of an xml2js tree (explicitCharkey, namespace prefixes stripped) this file reads.
type XmlNode = Record<string, unknown>;

function isNode(value: unknown): value is XmlNode {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function children(node: XmlNode, name: string): XmlNode[] {
  const value = node[name];
  return Array.isArray(value) ? value.filter(isNode) : [];
}

function attributeOf(node: XmlNode, name: string): string | undefined {
  const attributes = node.$;
  if (!isNode(attributes)) return undefined;
  const value = attributes[name];
  return typeof value === 'string' ? value : undefined;
}

function textOf(node: XmlNode | undefined): string | undefined {
  return typeof node?._ === 'string' ? node._ : undefined;
}

// Core section 1.3.3: SAML times are xs:dateTime in UTC.
const utcDateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

function instantOf(value: string): number;
function instantOf(value: string | undefined): number | undefined;
function instantOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = utcDateTime.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw refusal('malformed');
  return ms;
}

function windowRefusal(nowMs: number, notBefore: number | undefined, notOnOrAfter: number | undefined): SamlRefusalReason | undefined {
  if (notBefore !== undefined && nowMs + samlClockSkewMs < notBefore) return 'not_yet_valid';
  if (notOnOrAfter !== undefined && nowMs - samlClockSkewMs >= notOnOrAfter) return 'expired';
  return undefined;
}

/** Base64 of UTF-8 XML without a DTD, or a refusal. Line breaks (some IdPs wrap at 76 columns) are dropped. */
function decodeResponse(samlResponse: string): { base64: string; xml: string } {
  if (samlResponse.length > maxResponseBase64Chars) throw refusal('too_large');
  const base64 = samlResponse.replace(/[\r\n\t ]/g, '');
  if (base64.length === 0 || base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw refusal('malformed');
  let xml: string;
  try {
    xml = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(base64, 'base64'));
  } catch (error) {
    throw refusal('malformed', error);
  }
  // XXE and entity expansion: SAML never needs a DTD, so any declaration is refused before a parser sees it.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw refusal('malformed');
  return { base64, xml };
}

// node-saml throws plain Errors; their messages are the only handle on what failed (pinned by the tests).
const libraryRefusals: [RegExp, SamlRefusalReason][] = [
  [/InResponseTo/i, 'in_response_to_mismatch'],
  [/^SAML assertion expired/, 'expired'],
  [/^SAML assertion not yet valid/, 'not_yet_valid'],
  [/audience|AudienceRestriction/i, 'audience_mismatch'],
  [/decryption key/, 'encrypted_assertion'],
  // Wrapping shapes too: multiple assertions, an ID on two elements, a reference to another element.
  [/signature|signed/i, 'signature_invalid'],
];

/**
 * Why node-saml refused. Where its message does not say (a missing signature and a bad one read the same; a
 * subject confirmation outside its window, on either side), the document tells: it only picks the reason.
 */
async function libraryRefusal(error: unknown, xml: string, nowMs: number): Promise<SsoProtocolError> {
  if (error instanceof SamlStatusError) return refusal('idp_status', error);
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('No valid subject confirmation')) {
    const assertion = children((await responseOf(xml)) ?? {}, 'Assertion')[0] ?? {};
    const early = children(children(assertion, 'Subject')[0] ?? {}, 'SubjectConfirmation')
      .flatMap((confirmation) => children(confirmation, 'SubjectConfirmationData'))
      .some((data) => Date.parse(attributeOf(data, 'NotBefore') ?? '') > nowMs + samlClockSkewMs);
    return refusal(early ? 'not_yet_valid' : 'expired', error);
  }
  if (message === 'Invalid document signature' || message === 'Invalid signature') {
    const response = await responseOf(xml);
    const signedElement = message === 'Invalid signature' ? children(response ?? {}, 'Assertion')[0] : response;
    const hasSignature = signedElement !== undefined && children(signedElement, 'Signature').length > 0;
    return refusal(hasSignature ? 'signature_invalid' : 'unsigned', error);
  }
  const reason = libraryRefusals.find(([pattern]) => pattern.test(message))?.[1] ?? 'malformed';
  return refusal(reason, error);
}

async function responseOf(xml: string): Promise<XmlNode | undefined> {
  try {
    const doc: unknown = await parseXml2JsFromString(xml);
    return isNode(doc) && isNode(doc.Response) ? doc.Response : undefined;
  } catch {
    return undefined;
  }
}

/**
 * node-saml's InResponseTo check asks a cache whether it issued the id and when. Here the cache is the one id
 * the caller expects for this flow; the flow's age is the caller's to judge, so the answer is "just now".
 */
function expectedRequestCache(requestId: string, clock: Clock): CacheProvider {
  return {
    getAsync: async (key) => (key === requestId ? clock.now().toISOString() : null),
    saveAsync: async () => null,
    removeAsync: async () => null,
  };
}

function freshRequestId(): string {
  // An xs:ID is an NCName (no leading digit); 160 random bits, like node-saml's own ids.
  return `_${randomBytes(20).toString('hex')}`;
}

function firstString(value: unknown): string | undefined {
  const first: unknown = Array.isArray(value) ? value[0] : value;
  return typeof first === 'string' && first !== '' ? first : undefined;
}

function attributeValue(attributes: XmlNode, names: string[]): string | undefined {
  for (const name of names) {
    const value = firstString(attributes[name]);
    if (value !== undefined) return value;
  }
  return undefined;
}

function groupsOf(value: unknown): string[] {
  const values: unknown[] = Array.isArray(value) ? value : [value];
  return values.filter((v): v is string => typeof v === 'string' && v !== '');
}

export interface SamlValidation {
  identity: ExternalIdentity;
  /** The signed assertion's ID: record it until `notOnOrAfter` and refuse it a second time. */
  assertionId: string;
  /**
   * The first instant at which this adapter refuses the assertion anyway: its earliest NotOnOrAfter (Conditions,
   * SubjectConfirmationData) plus the accepted clock skew. A replay record kept until then covers the window.
   */
  notOnOrAfter: Date;
  /** The signed SubjectConfirmationData@InResponseTo: the request id answered, undefined when IdP-initiated. */
  inResponseTo: string | undefined;
}

/**
 * The SAML SP adapter. It holds no state but the clock: every call gets the connection, the SP and what the
 * flow expects.
 *
 * @example
 * const saml = new SamlAdapter({ clock: systemClock });
 * const { url, requestId } = await saml.authorizeUrl(config, sp, flowId); // keep requestId with the flow
 * // ...the browser comes back with a POST to sp.acsUrl:
 * const { identity, assertionId, notOnOrAfter } = await saml.validate(config, sp, body.SAMLResponse, { requestId });
 */
export class SamlAdapter {
  readonly #clock: Clock;

  constructor(options: { clock: Clock }) {
    this.#clock = options.clock;
  }

  /**
   * An HTTP-Redirect AuthnRequest (unsigned: the SP publishes no signing key) to send the browser to.
   * `relayState` (at most 80 bytes) comes back with the Response; `requestId` must come back as its InResponseTo.
   */
  async authorizeUrl(
    config: SamlConnectionConfig,
    sp: SamlServiceProvider,
    relayState: string,
  ): Promise<{ url: string; requestId: string }> {
    if (Buffer.byteLength(relayState, 'utf8') > maxRelayStateBytes) throw new RangeError('RelayState is limited to 80 bytes.');
    const requestId = freshRequestId();
    const saml = this.#saml(config, sp, { validateInResponseTo: ValidateInResponseTo.never, generateUniqueId: () => requestId });
    return { url: await saml.getAuthorizeUrlAsync(relayState, undefined, {}), requestId };
  }

  /**
   * Verifies a posted `SAMLResponse` (base64) for this connection. `expected.requestId` is the id of the
   * AuthnRequest of this login flow; undefined means an IdP-initiated Response, refused unless
   * `allowIdpInitiated`. Throws `SsoProtocolError` (reason: `SamlRefusalReason`) for every refusal.
   */
  async validate(
    config: SamlConnectionConfig,
    sp: SamlServiceProvider,
    samlResponse: string,
    expected: { requestId: string | undefined },
  ): Promise<SamlValidation> {
    // 1. Only a flow this SP started, unless the connection accepts IdP-initiated sign-in.
    if (expected.requestId === undefined && config.allowIdpInitiated !== true) throw refusal('unsolicited');
    // 2. Bounded, decodable, no DTD.
    const { base64, xml } = decodeResponse(samlResponse);
    // 3. The library: signatures, which assertion is signed, audience, Conditions in real time, InResponseTo.
    const saml = this.#saml(
      config,
      sp,
      expected.requestId === undefined
        ? { validateInResponseTo: ValidateInResponseTo.never }
        : { validateInResponseTo: ValidateInResponseTo.always, cacheProvider: expectedRequestCache(expected.requestId, this.#clock) },
    );
    let profile: Profile | null;
    try {
      ({ profile } = await saml.validatePostResponseAsync({ SAMLResponse: base64 }));
    } catch (error) {
      throw await libraryRefusal(error, xml, this.#clock.now().getTime());
    }
    // A signed NoPassive status: this SP never asks for passive authentication, so it is a refusal too.
    if (profile === null) throw refusal('idp_status');
    const assertion = profile.getAssertion?.().Assertion;
    const response = await responseOf(xml);
    if (!isNode(assertion) || response === undefined) throw refusal('malformed');
    // 4. The Response around it: unsigned unless wantResponseSigned, so these checks can only refuse.
    this.#checkResponse(config, sp, response, expected.requestId);
    // 5. The signed assertion, against the injected clock.
    const nowMs = this.#clock.now().getTime();
    const assertionId = attributeOf(assertion, 'ID');
    if (assertionId === undefined || assertionId === '') throw refusal('malformed');
    const issuers = children(assertion, 'Issuer');
    if (issuers.length !== 1 || textOf(issuers[0]) !== config.idpEntityId) throw refusal('issuer_mismatch');
    const conditions = children(assertion, 'Conditions')[0];
    if (conditions === undefined) throw refusal('malformed');
    const conditionsEnd = instantOf(attributeOf(conditions, 'NotOnOrAfter'));
    const conditionsWindow = windowRefusal(nowMs, instantOf(attributeOf(conditions, 'NotBefore')), conditionsEnd);
    if (conditionsWindow !== undefined) throw refusal(conditionsWindow);
    const confirmation = this.#bearerConfirmation(assertion, sp, expected.requestId, nowMs);
    const subject = profile.nameID as unknown;
    if (typeof subject !== 'string' || subject === '') throw refusal('malformed');
    if (config.nameIdFormat !== undefined && profile.nameIDFormat !== config.nameIdFormat) throw refusal('nameid_format_mismatch');
    // 6. The identity, from the signed assertion's attributes.
    const attributes = isNode(profile.attributes) ? profile.attributes : {};
    const email = attributeValue(attributes, config.emailAttribute === undefined ? defaultEmailAttributes : [config.emailAttribute]);
    const identity: ExternalIdentity = {
      subject,
      email,
      // The IdP is the tenant's directory: the address it asserts is its own record.
      emailVerified: email !== undefined,
      givenName: attributeValue(attributes, config.givenNameAttribute === undefined ? defaultGivenNameAttributes : [config.givenNameAttribute]),
      familyName: attributeValue(
        attributes,
        config.familyNameAttribute === undefined ? defaultFamilyNameAttributes : [config.familyNameAttribute],
      ),
      groups: groupsOf(attributes[config.groupsAttribute ?? defaultGroupsAttribute]),
    };
    const end = Math.min(confirmation.notOnOrAfter, conditionsEnd ?? Number.POSITIVE_INFINITY);
    return { identity, assertionId, notOnOrAfter: new Date(end + samlClockSkewMs), inResponseTo: confirmation.inResponseTo };
  }

  /** SP metadata for the IdP admin: entity id, the ACS (HTTP-POST), unsigned requests, signed assertions wanted. */
  metadata(config: SamlConnectionConfig, sp: SamlServiceProvider): string {
    return generateServiceProviderMetadata({
      issuer: sp.entityId,
      callbackUrl: sp.acsUrl,
      identifierFormat: config.nameIdFormat ?? null,
      wantAssertionsSigned: true,
    });
  }

  #saml(
    config: SamlConnectionConfig,
    sp: SamlServiceProvider,
    options: { validateInResponseTo: ValidateInResponseTo; cacheProvider?: CacheProvider; generateUniqueId?: () => string },
  ): SAML {
    const problems = samlConnectionProblems(config);
    if (problems.length > 0) throw new SsoProviderUnavailableError(`The SAML connection is misconfigured: ${problems.join(' ')}`);
    return new SAML({
      ...options,
      entryPoint: config.idpSsoUrl,
      issuer: sp.entityId,
      callbackUrl: sp.acsUrl,
      audience: sp.entityId,
      idpCert: config.idpCertificates,
      wantAssertionsSigned: true,
      wantAuthnResponseSigned: config.wantResponseSigned ?? false,
      acceptedClockSkewMs: samlClockSkewMs,
      identifierFormat: config.nameIdFormat ?? null,
      // The library's default asks for PasswordProtectedTransport with exact comparison, which IdPs that
      // sign in with MFA or Kerberos answer with an error; Bulwark's MFA policy is its own.
      disableRequestedAuthnContext: true,
    });
  }

  #checkResponse(config: SamlConnectionConfig, sp: SamlServiceProvider, response: XmlNode, requestId: string | undefined): void {
    // node-saml reads the status only when there is no assertion; a failure status with one is still a failure.
    const statusCode = children(children(response, 'Status')[0] ?? {}, 'StatusCode')[0];
    if (statusCode === undefined || attributeOf(statusCode, 'Value') !== successStatus) throw refusal('idp_status');
    // Bindings section 3.5.5.2: a signed Response MUST name its Destination; any Destination must be ours.
    const destination = attributeOf(response, 'Destination');
    if (destination === undefined ? config.wantResponseSigned === true : destination !== sp.acsUrl) {
      throw refusal('destination_mismatch');
    }
    const issuer = children(response, 'Issuer')[0];
    if (issuer !== undefined && textOf(issuer) !== config.idpEntityId) throw refusal('issuer_mismatch');
    // Solicited: node-saml has matched it. Unsolicited: answering some other request is not unsolicited.
    if (requestId === undefined && attributeOf(response, 'InResponseTo') !== undefined) throw refusal('in_response_to_mismatch');
  }

  /**
   * Profiles section 4.1.4.2: a bearer SubjectConfirmation whose data names our ACS as Recipient, answers our
   * request (or none, IdP-initiated), and is inside its NotOnOrAfter (and NotBefore, if an IdP sets one).
   * With several, one that passes is enough; otherwise the first one's failure is the reason.
   */
  #bearerConfirmation(
    assertion: XmlNode,
    sp: SamlServiceProvider,
    requestId: string | undefined,
    nowMs: number,
  ): { notOnOrAfter: number; inResponseTo: string | undefined } {
    const bearers = children(children(assertion, 'Subject')[0] ?? {}, 'SubjectConfirmation').filter(
      (confirmation) => attributeOf(confirmation, 'Method') === bearerMethod,
    );
    let firstRefusal: SamlRefusalReason | undefined;
    for (const confirmation of bearers) {
      const data = children(confirmation, 'SubjectConfirmationData')[0] ?? {};
      const inResponseTo = attributeOf(data, 'InResponseTo');
      let reason: SamlRefusalReason | undefined;
      if (attributeOf(data, 'Recipient') !== sp.acsUrl) reason = 'recipient_mismatch';
      else if (inResponseTo !== requestId) reason = 'in_response_to_mismatch';
      else {
        // The profile requires it: it is what bounds the replay window.
        const notOnOrAfter = instantOf(attributeOf(data, 'NotOnOrAfter') ?? '');
        reason = windowRefusal(nowMs, instantOf(attributeOf(data, 'NotBefore')), notOnOrAfter);
        if (reason === undefined) return { notOnOrAfter, inResponseTo };
      }
      firstRefusal ??= reason;
    }
    throw refusal(firstRefusal ?? 'subject_confirmation_invalid');
  }
}
