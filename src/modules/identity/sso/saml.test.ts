import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { DOMParser, onWarningStopParsing } from '@xmldom/xmldom';
import { Compile } from 'typebox/compile';
import { movableClock } from '../../../testing/clock.ts';
import {
  createSamlSigningKey,
  insertCommentInNameId,
  type SamlResponseOptions,
  type SamlSigningKey,
  SamlTestIdp,
  signSamlResponse,
  samlNameIdFormats,
  samlStatusCodes,
  toSamlBase64,
  wrapSignature,
  type XswVariant,
} from '../../../testing/saml-idp.ts';
import { SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';
import {
  SamlAdapter,
  samlClockSkewMs,
  type SamlConnectionConfig,
  samlConnectionConfig,
  samlConnectionProblems,
  type SamlRefusalReason,
  type SamlServiceProvider,
} from './saml.ts';

const sp: SamlServiceProvider = {
  entityId: 'https://bulwark.example.test/v1/sso/0a1b2c3d4e5f/9f8e7d6c5b4a/saml',
  acsUrl: 'https://bulwark.example.test/v1/sso/0a1b2c3d4e5f/9f8e7d6c5b4a/saml/acs',
};
const requestId = '_0123456789abcdef0123456789abcdef01234567';
const alice = {
  nameId: 'alice@example.com',
  attributes: {
    email: 'alice@example.com',
    givenName: 'Alice',
    surname: 'Liddell',
    groups: ['admins', 'developers', 'on-call'],
  },
};
const mallory = { nameId: 'admin@example.com', attributes: { email: 'admin@example.com', groups: ['owners'] } };

let idp: SamlTestIdp;
let attackerKey: SamlSigningKey;
let config: SamlConnectionConfig;

before(async () => {
  [idp, attackerKey] = await Promise.all([SamlTestIdp.create(), createSamlSigningKey('Attacker')]);
  config = idp.connection();
});

function response(options: Partial<SamlResponseOptions> = {}): string {
  return idp.responseXml({ sp, ...alice, inResponseTo: requestId, sign: 'assertion', ...options });
}

function adapter(offsetMs = 0): SamlAdapter {
  const clock = movableClock();
  clock.advance(offsetMs);
  return new SamlAdapter({ clock });
}

async function validate(
  xml: string,
  options: { requestId?: string | undefined; config?: Partial<SamlConnectionConfig>; offsetMs?: number } = {},
) {
  const expected = { requestId: 'requestId' in options ? options.requestId : requestId };
  return adapter(options.offsetMs).validate({ ...config, ...options.config }, sp, toSamlBase64(xml), expected);
}

async function refused(promise: Promise<unknown>, reason: SamlRefusalReason): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SsoProtocolError, `expected SsoProtocolError, got ${String(error)}`);
    assert.equal(error.reason, reason, `reason (cause: ${String(error.cause)})`);
    // The message is fixed per reason: nothing from the document (names, addresses, values) leaks into logs.
    assert.doesNotMatch(error.message, /alice|admin@|example\.com|_[0-9a-f]{20}/);
    return true;
  });
}

describe('SAML connection config', () => {
  const check = Compile(samlConnectionConfig);

  it('accepts a connection and refuses unknown fields, too many or oversized or non-PEM certificates', () => {
    assert.ok(check.Check(config));
    assert.ok(check.Check({ ...config, wantResponseSigned: true, groupsAttribute: 'memberOf', nameIdFormat: samlNameIdFormats.persistent }));
    assert.ok(!check.Check({ ...config, entryPoint: 'https://elsewhere.test' }));
    assert.ok(!check.Check({ ...config, idpCertificates: [] }));
    assert.ok(!check.Check({ ...config, idpCertificates: Array<string>(5).fill(idp.key.certificatePem) }));
    assert.ok(!check.Check({ ...config, idpCertificates: [idp.key.privateKeyPem] }));
    const huge = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(16_384)}\n-----END CERTIFICATE-----\n`;
    assert.ok(!check.Check({ ...config, idpCertificates: [huge] }));
    assert.ok(!check.Check({ ...config, idpSsoUrl: 'ftp://idp.example.test/sso' }));
  });

  it('reports an insecure SSO URL and a certificate that does not parse', () => {
    assert.deepEqual(samlConnectionProblems(config), []);
    assert.deepEqual(samlConnectionProblems({ ...config, idpSsoUrl: 'http://127.0.0.1:8443/sso', allowInsecureHttp: true }), []);
    assert.equal(samlConnectionProblems({ ...config, idpSsoUrl: 'http://127.0.0.1:8443/sso' }).length, 1);
    assert.equal(samlConnectionProblems({ ...config, idpSsoUrl: 'http://idp.example.test/sso', allowInsecureHttp: true }).length, 1);
    assert.equal(samlConnectionProblems({ ...config, idpSsoUrl: 'https://user:pw@idp.example.test/sso#x' }).length, 2);
    const garbled = idp.key.certificatePem.replace(/\n[A-Za-z0-9+/]{10}/, '\nAAAAAAAAAA');
    assert.deepEqual(samlConnectionProblems({ ...config, idpCertificates: [idp.key.certificatePem, garbled] }), [
      'idpCertificates[1] is not an X.509 certificate.',
    ]);
  });
});

describe('SamlAdapter.authorizeUrl', () => {
  it('redirects to the IdP with an unsigned AuthnRequest naming this SP, its ACS, the POST binding and the RelayState', async () => {
    const { url, requestId: id } = await adapter().authorizeUrl({ ...config, nameIdFormat: samlNameIdFormats.persistent }, sp, 'flow-42');
    assert.ok(url.startsWith(`${idp.ssoUrl}?`));
    assert.match(id, /^_[0-9a-f]{40}$/);
    assert.deepEqual(idp.readAuthnRequest(url), {
      id,
      issuer: sp.entityId,
      acsUrl: sp.acsUrl,
      destination: idp.ssoUrl,
      protocolBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
      nameIdFormat: samlNameIdFormats.persistent,
      relayState: 'flow-42',
      signed: false,
    });
    const again = await adapter().authorizeUrl(config, sp, 'flow-43');
    assert.notEqual(again.requestId, id);
    assert.equal(idp.readAuthnRequest(again.url).nameIdFormat, undefined);
  });

  it('refuses a RelayState over 80 bytes and an SSO URL that is not https', async () => {
    await assert.rejects(adapter().authorizeUrl(config, sp, 'x'.repeat(81)), RangeError);
    await assert.rejects(adapter().authorizeUrl({ ...config, idpSsoUrl: 'http://idp.example.test/sso' }, sp, ''), SsoProviderUnavailableError);
    const local = await adapter().authorizeUrl({ ...config, idpSsoUrl: 'http://127.0.0.1:9/sso', allowInsecureHttp: true }, sp, '');
    assert.ok(local.url.startsWith('http://127.0.0.1:9/sso?SAMLRequest='));
  });
});

describe('SamlAdapter.validate: accepted', () => {
  it('a signed assertion yields the NameID, email, names and every group', async () => {
    const before = Date.now();
    const result = await validate(response({ assertionId: '_assertion-1' }));
    assert.deepEqual(result.identity, {
      subject: 'alice@example.com',
      email: 'alice@example.com',
      emailVerified: true,
      givenName: 'Alice',
      familyName: 'Liddell',
      groups: ['admins', 'developers', 'on-call'],
    });
    assert.equal(result.assertionId, '_assertion-1');
    assert.equal(result.inResponseTo, requestId);
    // The test IdP's Conditions and SubjectConfirmationData both end 5 min after issue; plus the skew.
    const end = result.notOnOrAfter.getTime() - samlClockSkewMs - 300_000;
    assert.ok(end >= before - 1 && end <= Date.now(), 'notOnOrAfter is the assertion end plus the skew');
  });

  it('reads configured attribute names, and a single group as a list of one', async () => {
    const result = await validate(
      response({ attributes: { mail: 'a@example.com', fn: 'A', ln: 'L', memberOf: 'staff', email: 'ignored@example.com' } }),
      { config: { emailAttribute: 'mail', givenNameAttribute: 'fn', familyNameAttribute: 'ln', groupsAttribute: 'memberOf' } },
    );
    assert.deepEqual(result.identity, {
      subject: 'alice@example.com',
      email: 'a@example.com',
      emailVerified: true,
      givenName: 'A',
      familyName: 'L',
      groups: ['staff'],
    });
    const bare = await validate(response({ attributes: {} }));
    assert.deepEqual(bare.identity, {
      subject: 'alice@example.com',
      email: undefined,
      emailVerified: false,
      givenName: undefined,
      familyName: undefined,
      groups: [],
    });
  });

  it('both signed, when the connection wants the Response signed', async () => {
    const result = await validate(response({ sign: 'both' }), { config: { wantResponseSigned: true } });
    assert.equal(result.identity.subject, 'alice@example.com');
  });

  it('signed with the second of two certificates (rollover)', async () => {
    const rollover = { idpCertificates: [attackerKey.certificatePem, idp.key.certificatePem] };
    assert.equal((await validate(response(), { config: rollover })).identity.subject, 'alice@example.com');
  });

  it('IdP-initiated, only when the connection allows it and the Response answers no request', async () => {
    const unsolicited = response({ inResponseTo: undefined });
    await refused(validate(unsolicited, { requestId: undefined }), 'unsolicited');
    const result = await validate(unsolicited, { requestId: undefined, config: { allowIdpInitiated: true } });
    assert.equal(result.inResponseTo, undefined);
    assert.equal(result.identity.subject, 'alice@example.com');
    await refused(validate(response(), { requestId: undefined, config: { allowIdpInitiated: true } }), 'in_response_to_mismatch');
    await refused(
      validate(response({ inResponseTo: undefined, responseInResponseTo: requestId }), { requestId: undefined, config: { allowIdpInitiated: true } }),
      'in_response_to_mismatch',
    );
  });
});

describe('SamlAdapter.validate: refused', () => {
  it('an unsigned assertion, and a signed Response around an unsigned assertion', async () => {
    await refused(validate(response({ sign: 'none' })), 'unsigned');
    await refused(validate(response({ sign: 'response' })), 'unsigned');
    await refused(validate(response({ sign: 'response' }), { config: { wantResponseSigned: true } }), 'unsigned');
  });

  it('an unsigned Response when the connection wants it signed', async () => {
    await refused(validate(response({ sign: 'assertion' }), { config: { wantResponseSigned: true } }), 'unsigned');
  });

  it('an assertion signed with another key', async () => {
    await refused(validate(response({ signingKey: attackerKey })), 'signature_invalid');
    await refused(validate(response({ sign: 'both', signingKey: attackerKey }), { config: { wantResponseSigned: true } }), 'signature_invalid');
  });

  it('an assertion altered after signing', async () => {
    const signed = response();
    const altered = signed.replace('>alice@example.com</saml:NameID>', '>admin@example.com</saml:NameID>');
    assert.notEqual(altered, signed);
    await refused(validate(altered), 'signature_invalid');
    const regrouped = signed.replace('>on-call<', '>owners<');
    assert.notEqual(regrouped, signed);
    await refused(validate(regrouped), 'signature_invalid');
  });

  it('another audience, or none', async () => {
    await refused(validate(response({ audience: 'https://other-sp.example.test' })), 'audience_mismatch');
    await refused(validate(response({ audience: null })), 'audience_mismatch');
  });

  it('another recipient or destination', async () => {
    await refused(validate(response({ recipient: 'https://other-sp.example.test/acs' })), 'recipient_mismatch');
    await refused(validate(response({ recipient: null })), 'recipient_mismatch');
    await refused(validate(response({ destination: 'https://other-sp.example.test/acs' })), 'destination_mismatch');
    // A signed Response must say where it goes (Bindings 3.5.5.2).
    await refused(validate(response({ sign: 'both', destination: null }), { config: { wantResponseSigned: true } }), 'destination_mismatch');
    assert.ok(await validate(response({ destination: null })));
  });

  it('another issuer, in the signed assertion or on the Response', async () => {
    await refused(validate(response({ issuer: 'https://other-idp.example.test' })), 'issuer_mismatch');
    const responseIssuer = response().replace(
      `<saml:Issuer>${idp.entityId}</saml:Issuer><samlp:Status>`,
      '<saml:Issuer>https://other-idp.example.test</saml:Issuer><samlp:Status>',
    );
    await refused(validate(responseIssuer), 'issuer_mismatch');
  });

  it('expired by the injected clock (Conditions, then SubjectConfirmationData) and by real time', async () => {
    await refused(validate(response(), { offsetMs: 300_000 + samlClockSkewMs }), 'expired');
    assert.ok(await validate(response(), { offsetMs: 300_000 + samlClockSkewMs - 5_000 }), 'inside the skew');
    const shortBearer = response({ subjectNotOnOrAfter: new Date(Date.now() + 60_000) });
    await refused(validate(shortBearer, { offsetMs: 60_000 + samlClockSkewMs }), 'expired');
    const past = new Date(Date.now() - 3_600_000);
    await refused(validate(response({ issueInstant: past })), 'expired');
    await refused(validate(response({ subjectNotOnOrAfter: new Date(Date.now() - 2 * samlClockSkewMs) })), 'expired');
    await refused(validate(response({ notOnOrAfter: new Date(Date.now() - 2 * samlClockSkewMs) })), 'expired');
  });

  it('not yet valid by the injected clock (Conditions, SubjectConfirmationData) and by real time', async () => {
    await refused(validate(response(), { offsetMs: -(30_000 + samlClockSkewMs + 5_000) }), 'not_yet_valid');
    assert.ok(await validate(response(), { offsetMs: -(30_000 + samlClockSkewMs - 5_000) }), 'inside the skew');
    const bearerFromNow = response({ notBefore: null, subjectNotBefore: new Date() });
    await refused(validate(bearerFromNow, { offsetMs: -(samlClockSkewMs + 5_000) }), 'not_yet_valid');
    const lateBearer = response({ notBefore: null, subjectNotBefore: new Date(Date.now() + 2 * samlClockSkewMs) });
    await refused(validate(lateBearer), 'not_yet_valid');
    await refused(validate(response({ notBefore: new Date(Date.now() + 2 * samlClockSkewMs) })), 'not_yet_valid');
  });

  it('an answer to another request, on the Response or in the signed assertion', async () => {
    await refused(validate(response({ inResponseTo: '_another-request' })), 'in_response_to_mismatch');
    await refused(validate(response({ responseInResponseTo: '_another-request' })), 'in_response_to_mismatch');
    await refused(validate(response({ inResponseTo: '_another-request', responseInResponseTo: requestId })), 'in_response_to_mismatch');
    await refused(validate(response({ inResponseTo: undefined, responseInResponseTo: requestId })), 'in_response_to_mismatch');
    await refused(validate(response({ responseInResponseTo: null })), 'in_response_to_mismatch');
  });

  it('a DOCTYPE or entity declaration (XXE, entity expansion)', async () => {
    const signed = response();
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>${signed}`;
    await refused(validate(xxe), 'malformed');
    const laughs = `<!DOCTYPE r [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;">]>${signed.replace('>Alice<', '>&b;<')}`;
    await refused(validate(laughs), 'malformed');
    await refused(validate(`<!doctype samlp:Response>${signed}`), 'malformed');
  });

  it('input that is oversized, not base64, not UTF-8 or not XML', async () => {
    const expected = { requestId };
    await refused(adapter().validate(config, sp, 'A'.repeat(256 * 1024 + 4), expected), 'too_large');
    await refused(adapter().validate(config, sp, 'not base64!', expected), 'malformed');
    await refused(adapter().validate(config, sp, '', expected), 'malformed');
    await refused(adapter().validate(config, sp, Buffer.from([0x3c, 0xff, 0xfe, 0x3e]).toString('base64'), expected), 'malformed');
    await refused(validate('<samlp:Response'), 'malformed');
    // Wrapped at 76 columns, as some IdPs post it: still accepted.
    const wrapped = toSamlBase64(response()).replace(/(.{76})/g, '$1\r\n');
    assert.ok(await adapter().validate(config, sp, wrapped, expected));
  });

  it('a failure status, with or without a (signed) assertion', async () => {
    await refused(validate(response({ statusCode: samlStatusCodes.responder, statusMessage: 'alice is locked' })), 'idp_status');
    await refused(validate(response({ statusCode: samlStatusCodes.requester, withAssertion: true })), 'idp_status');
  });

  it('a time that is not xs:dateTime in UTC, even when signed', async () => {
    const unsigned = response({ sign: 'none', notOnOrAfter: new Date('2999-01-01T00:00:00.000Z') });
    const offset = unsigned.replace('NotOnOrAfter="2999-01-01T00:00:00.000Z"', 'NotOnOrAfter="2999-01-01T01:00:00+01:00"');
    assert.notEqual(offset, unsigned);
    await refused(validate(signSamlResponse(offset, idp.key, 'assertion')), 'malformed');
    assert.ok(await validate(signSamlResponse(unsigned, idp.key, 'assertion')), 'the same document in UTC passes');
  });

  it('a NameID of another format than the connection requires', async () => {
    const persistent = { nameIdFormat: samlNameIdFormats.persistent };
    await refused(validate(response(), { config: persistent }), 'nameid_format_mismatch');
    assert.ok(await validate(response({ nameIdFormat: samlNameIdFormats.persistent }), { config: persistent }));
  });

  it('an encrypted assertion (this SP publishes no encryption key)', async () => {
    const encrypted = response({ withAssertion: false }).replace(
      '</samlp:Response>',
      '<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion></samlp:Response>',
    );
    await refused(validate(encrypted), 'encrypted_assertion');
  });

  it('a bearer confirmation without NotOnOrAfter, or no bearer confirmation', async () => {
    await refused(validate(response({ subjectNotOnOrAfter: null })), 'malformed');
    await refused(validate(response({ subjectNotOnOrAfter: null }), { requestId: undefined, config: { allowIdpInitiated: true } }), 'malformed');
    const holderOfKey = 'urn:oasis:names:tc:SAML:2.0:cm:holder-of-key';
    await refused(validate(response({ confirmationMethod: holderOfKey })), 'subject_confirmation_invalid');
  });
});

describe('SamlAdapter.validate: XML signature wrapping', () => {
  const forged = () => idp.assertionXml({ sp, ...mallory, inResponseTo: requestId });
  const wrapped = (variant: XswVariant, sign: SamlResponseOptions['sign'] = 'assertion') =>
    wrapSignature(response({ sign }), forged(), variant);

  it('a forged assertion next to the signed one', async () => {
    await refused(validate(wrapped('sibling-assertion')), 'signature_invalid');
  });

  it('the signed assertion moved into Extensions, a forged one with its ID and Signature in its place', async () => {
    await refused(validate(wrapped('assertion-in-extensions')), 'signature_invalid');
    await refused(validate(wrapped('assertion-in-extensions', 'both')), 'signature_invalid');
  });

  it('a forged assertion holding the signed one as a child', async () => {
    // node-saml checks the assertion it reads, which carries no signature of its own.
    await refused(validate(wrapped('forged-wraps-signed')), 'unsigned');
  });

  it("the signed assertion inside a ds:Object of the forged assertion's copied Signature", async () => {
    await refused(validate(wrapped('assertion-signature-object')), 'signature_invalid');
  });

  it("a forged assertion inside the Response Signature's ds:Object: the signed assertion is the one read", async () => {
    // The Response signature still verifies (the enveloped transform drops the Signature, Object and all),
    // so node-saml accepts the document; what it returns must be the signed assertion, never the forged one.
    const result = await validate(wrapped('response-signature-object', 'both'), { config: { wantResponseSigned: true } });
    assert.equal(result.identity.subject, 'alice@example.com');
    assert.equal(result.identity.email, 'alice@example.com');
    assert.deepEqual(result.identity.groups, alice.attributes.groups);
  });

  it('a forged Response carrying the signed one inside its copied Signature', async () => {
    await refused(validate(wrapped('response-wraps-signed-response', 'both'), { config: { wantResponseSigned: true } }), 'signature_invalid');
    // Without wantResponseSigned too: the copied Signature's transforms now include the nested ones.
    await refused(validate(wrapped('response-wraps-signed-response', 'both')), 'signature_invalid');
  });

  it('a comment splitting the signed NameID yields the whole signed name, not its first text node', async () => {
    const signed = response({ nameId: 'alice@example.com.evil.test' });
    const result = await validate(insertCommentInNameId(signed, 'alice@example.com'.length));
    assert.equal(result.identity.subject, 'alice@example.com.evil.test');
  });
});

describe('SamlAdapter.metadata', () => {
  it('is well-formed XML naming the SP, its ACS (HTTP-POST), unsigned requests and signed assertions wanted', () => {
    const xml = adapter().metadata({ ...config, nameIdFormat: samlNameIdFormats.persistent }, sp);
    const doc = new DOMParser({ onError: onWarningStopParsing }).parseFromString(xml, 'text/xml');
    const md = 'urn:oasis:names:tc:SAML:2.0:metadata';
    const root = doc.documentElement;
    assert.ok(root);
    assert.equal(root.namespaceURI, md);
    assert.equal(root.localName, 'EntityDescriptor');
    assert.equal(root.getAttribute('entityID'), sp.entityId);
    const descriptor = doc.getElementsByTagNameNS(md, 'SPSSODescriptor')[0];
    assert.ok(descriptor);
    assert.equal(descriptor.getAttribute('AuthnRequestsSigned'), 'false');
    assert.equal(descriptor.getAttribute('WantAssertionsSigned'), 'true');
    assert.equal(descriptor.getAttribute('protocolSupportEnumeration'), 'urn:oasis:names:tc:SAML:2.0:protocol');
    const acs = doc.getElementsByTagNameNS(md, 'AssertionConsumerService');
    assert.equal(acs.length, 1);
    const service = acs[0];
    assert.ok(service);
    assert.equal(service.getAttribute('Binding'), 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST');
    assert.equal(service.getAttribute('Location'), sp.acsUrl);
    assert.equal(doc.getElementsByTagNameNS(md, 'NameIDFormat')[0]?.textContent, samlNameIdFormats.persistent);
    assert.equal(doc.getElementsByTagNameNS(md, 'KeyDescriptor').length, 0);
  });
});
