import { X509Certificate } from 'node:crypto';
import { connect, isIP, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Client, type Entry, Filter, FilterParser, InvalidCredentialsError, ResultCodeError, type SearchOptions } from 'ldapts';
import { type Static, Type } from 'typebox';
import { type ExternalIdentity, SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';

const distinguishedName = (description: string) => Type.String({ minLength: 3, maxLength: 1024, pattern: '=', description });
// RFC 4512 §2.5: a descriptor (keystring) or a numeric OID; no options (`;binary`), which the adapter does not read.
const attributeName = (description: string) =>
  Type.String({ minLength: 1, maxLength: 128, pattern: '^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\\.[0-9]+)+)$', description });
const filterTemplate = (placeholder: string, description: string) =>
  Type.String({ minLength: 3, maxLength: 1024, pattern: placeholder.replace(/[{}]/g, '\\$&'), description });

/**
 * One LDAP connection as the SSO service stores it. The service account's password is not part of it: it is
 * a write-only secret handed to {@link LdapAdapter.authenticate} at call time. Cross-field rules (the URL
 * scheme against `security`, parsable filters and certificates) are {@link ldapConnectionProblems}.
 */
export const ldapConnectionConfig = Type.Object(
  {
    url: Type.String({
      maxLength: 2048,
      pattern: '^ldaps?://[^/?#@\\s]+/?$',
      description: 'ldap://host[:port] (StartTLS or, for tests only, plain) or ldaps://host[:port] (TLS from the first byte).',
    }),
    security: Type.Union([Type.Literal('ldaps'), Type.Literal('starttls'), Type.Literal('none')], {
      description: "'ldaps' needs an ldaps:// URL, 'starttls' an ldap:// one. 'none' sends passwords in clear: for tests only, and refused unless allowInsecure.",
    }),
    caCertificates: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 65_536 }), {
        minItems: 1,
        maxItems: 16,
        description: "PEM certificates trusted for the server's certificate instead of Node's default trust store.",
      }),
    ),
    bindDn: Type.Optional(distinguishedName('Service account that searches for the user; anonymous search when absent.')),
    userBaseDn: distinguishedName('Subtree searched for the user.'),
    userFilter: Type.Optional(filterTemplate('{username}', "RFC 4515 filter; {username} is replaced by the escaped username. Default '(uid={username})'.")),
    subjectAttribute: Type.Optional(attributeName("Single-valued attribute that identifies the person for good (e.g. 'entryUUID'). Default: the entry's DN.")),
    emailAttribute: Type.Optional(attributeName("Default 'mail'.")),
    givenNameAttribute: Type.Optional(attributeName("Default 'givenName'.")),
    familyNameAttribute: Type.Optional(attributeName("Default 'sn'.")),
    groupBaseDn: Type.Optional(distinguishedName('Subtree searched for the groups that list the user; no group search when absent.')),
    groupFilter: Type.Optional(filterTemplate('{dn}', "RFC 4515 filter; {dn} is replaced by the user's escaped DN. Default '(member={dn})'.")),
    groupNameAttribute: Type.Optional(attributeName("Attribute of a group entry that names it. Default 'cn'.")),
    memberOfAttribute: Type.Optional(attributeName("Instead of a group search: the user's attribute that lists the DNs of its groups (e.g. 'memberOf').")),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, description: 'Per connection and per operation. Default 5000.' })),
    allowInsecure: Type.Optional(Type.Boolean({ description: "Permits security 'none'. For tests only." })),
  },
  { additionalProperties: false },
);
export type LdapConnectionConfig = Static<typeof ldapConnectionConfig>;

const defaults = {
  userFilter: '(uid={username})',
  emailAttribute: 'mail',
  givenNameAttribute: 'givenName',
  familyNameAttribute: 'sn',
  groupFilter: '(member={dn})',
  groupNameAttribute: 'cn',
  timeoutMs: 5_000,
} as const;

const maxUsernameLength = 256;
const maxPasswordLength = 1024;
const controlCharacter = /\p{Cc}/u;

/**
 * RFC 4515 §3 asks `* ( ) \ NUL` to be escaped in an assertion value, and lets any other UTF-8 stand as it
 * is. Non-ASCII is left unescaped on purpose: ldapts parses a string filter by turning each `\XX` into one
 * UTF-16 unit, so an escaped UTF-8 sequence would reach the server double-encoded and match nothing.
 */
function fillFilter(template: string, placeholder: '{username}' | '{dn}', value: string): string {
  const escaped = Filter.escape(value);
  // A replacer function, so `$&`, `$'` and the like in the value stay literal.
  return template.replaceAll(placeholder, () => escaped);
}

/**
 * What {@link ldapConnectionConfig} cannot say: safe, value-free sentences, empty when the config is usable.
 * The service should refuse to store a config with problems; {@link LdapAdapter.authenticate} refuses to use one.
 */
export function ldapConnectionProblems(config: LdapConnectionConfig): string[] {
  const problems: string[] = [];
  const ldaps = config.url.toLowerCase().startsWith('ldaps://');
  if (config.security === 'ldaps' && !ldaps) problems.push("security 'ldaps' needs an ldaps:// url");
  if (config.security !== 'ldaps' && ldaps) problems.push(`security '${config.security}' needs an ldap:// url`);
  if (config.security === 'none' && config.allowInsecure !== true) problems.push("security 'none' sends passwords in clear and is refused unless allowInsecure is set");
  if (config.memberOfAttribute !== undefined && config.groupBaseDn !== undefined) problems.push('memberOfAttribute and groupBaseDn are alternatives: set one');
  for (const [name, template, placeholder] of [
    ['userFilter', config.userFilter ?? defaults.userFilter, '{username}'],
    ['groupFilter', config.groupFilter ?? defaults.groupFilter, '{dn}'],
  ] as const) {
    try {
      FilterParser.parseString(fillFilter(template, placeholder, 'x'));
    } catch {
      problems.push(`${name} is not a valid LDAP filter`);
    }
  }
  for (const [index, pem] of (config.caCertificates ?? []).entries()) {
    try {
      new X509Certificate(pem);
    } catch {
      problems.push(`caCertificates[${index}] is not a PEM certificate`);
    }
  }
  return problems;
}

type Settings = LdapConnectionConfig & Required<Pick<LdapConnectionConfig, keyof typeof defaults>>;

function withDefaults(config: LdapConnectionConfig): Settings {
  return {
    ...config,
    userFilter: config.userFilter ?? defaults.userFilter,
    emailAttribute: config.emailAttribute ?? defaults.emailAttribute,
    givenNameAttribute: config.givenNameAttribute ?? defaults.givenNameAttribute,
    familyNameAttribute: config.familyNameAttribute ?? defaults.familyNameAttribute,
    groupFilter: config.groupFilter ?? defaults.groupFilter,
    groupNameAttribute: config.groupNameAttribute ?? defaults.groupNameAttribute,
    timeoutMs: config.timeoutMs ?? defaults.timeoutMs,
  };
}

// OpenSSL's verification results (and Node's name check): the peer answered, but could not prove who it is.
const certificateFailures = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function transportFailure(error: unknown): SsoProviderUnavailableError {
  const code = error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : '';
  if (certificateFailures.has(code)) {
    return new SsoProviderUnavailableError(
      "The LDAP server's TLS certificate could not be verified (not issued by a trusted CA, not for this host, or expired)",
      { cause: error },
    );
  }
  if (code.startsWith('ERR_SSL_')) return new SsoProviderUnavailableError('The TLS handshake with the LDAP server failed', { cause: error });
  return new SsoProviderUnavailableError('The LDAP server could not be reached or did not answer', { cause: error });
}

/** An LDAP result code is the server's answer to this step; anything else is the transport's failure. */
function failure(error: unknown, refused: (error: ResultCodeError) => Error): Error {
  if (error instanceof SsoProtocolError || error instanceof SsoProviderUnavailableError) return error;
  if (error instanceof ResultCodeError) return refused(error);
  return transportFailure(error);
}

const unavailableBecause = (what: string) => (error: ResultCodeError) =>
  new SsoProviderUnavailableError(`${what} (LDAP result code ${error.code})`, { cause: error });

const invalidCredentials = (cause?: unknown) => new SsoProtocolError('invalid_credentials', 'Invalid username or password', { cause });

/** One TCP connection to the directory, TLS per `security`, with every failure translated. */
class Session {
  readonly #client: Client;
  readonly #timeoutMs: number;

  private constructor(client: Client, timeoutMs: number) {
    this.#client = client;
    this.#timeoutMs = timeoutMs;
  }

  static async open(settings: Settings): Promise<Session> {
    const host = new URL(settings.url).hostname.replace(/^\[(.*)\]$/, '$1');
    const tls: ConnectionOptions = {
      // Absent: Node's default trust store. Never rejectUnauthorized: false.
      ca: settings.caCertificates,
      // ldapts upgrades a StartTLS socket without a host, and Node then checks the certificate against
      // 'localhost'; the name must be the one the config points at. SNI carries names only (RFC 6066 §3).
      host,
      servername: isIP(host) === 0 ? host : undefined,
      minVersion: 'TLSv1.2',
    };
    let socket: Socket | undefined;
    let upgraded: TLSSocket | undefined;
    // ldapts reconnects a dropped ldap:// socket by itself, which would send the next bind in clear after
    // StartTLS (and search unauthenticated): a session gets one connection, and losing it fails the login.
    const connectOnce = (port: number, hostname: string): Socket => {
      if (socket !== undefined) throw new SsoProviderUnavailableError('The connection to the LDAP server was lost');
      socket = connect(port, hostname);
      return socket;
    };
    const upgrade = (options: ConnectionOptions): TLSSocket => {
      upgraded = tlsConnect(options);
      return upgraded;
    };
    let client: Client;
    try {
      client = new Client({
        url: settings.url,
        timeout: settings.timeoutMs,
        connectTimeout: settings.timeoutMs,
        ...(settings.security === 'ldaps'
          ? { tlsOptions: tls }
          : { createConnection: connectOnce as typeof connect, createSecureConnection: upgrade as typeof tlsConnect }),
      });
    } catch (error) {
      throw new SsoProviderUnavailableError('The LDAP url cannot be used', { cause: error });
    }
    const session = new Session(client, settings.timeoutMs);
    if (settings.security === 'starttls') {
      // ldapts times the StartTLS request but not the handshake after it, and a stalled handshake would
      // never settle: fail it (with an error, which is what ldapts listens for).
      const deadline = setTimeout(() => upgraded?.destroy(new Error('TLS handshake timed out')), settings.timeoutMs);
      try {
        await client.startTLS(tls);
      } catch (error) {
        await session.close();
        throw failure(error, unavailableBecause('The LDAP server refused StartTLS'));
      } finally {
        clearTimeout(deadline);
      }
    }
    return session;
  }

  async bind(dn: string, password: string, refused: (error: ResultCodeError) => Error): Promise<void> {
    try {
      await this.#client.bind(dn, password);
    } catch (error) {
      throw failure(error, refused);
    }
  }

  async search(baseDn: string, options: SearchOptions, what: string): Promise<Entry[]> {
    try {
      const result = await this.#client.search(baseDn, {
        scope: 'sub',
        derefAliases: 'never',
        timeLimit: Math.ceil(this.#timeoutMs / 1000),
        ...options,
      });
      return result.searchEntries;
    } catch (error) {
      throw failure(error, unavailableBecause(what));
    }
  }

  async close(): Promise<void> {
    // Best effort: the socket is destroyed whatever the server makes of the unbind.
    await this.#client.unbind().catch(() => undefined);
  }
}

function values(entry: Entry, attribute: string): string[] {
  const wanted = attribute.toLowerCase();
  // The server names attributes its own way ('givenName' for 'givenname'), so match without case.
  const key = Object.keys(entry).find((name) => name !== 'dn' && name.toLowerCase() === wanted);
  const found = key === undefined ? undefined : entry[key];
  if (found === undefined) return [];
  const list: (string | Buffer)[] = Array.isArray(found) ? found : [found];
  return list.filter((value): value is string => typeof value === 'string' && value !== '');
}

export interface LdapAdapterOptions {
  /** More groups than this fails the login rather than deciding roles on a truncated list. Default 1000. */
  maxGroups?: number;
}

/**
 * Password login against a directory: find the one entry for the username (as the service account, or
 * anonymously), bind as that entry with the password on a connection of its own, then read its groups.
 * Stateless: the config, the service account's password and the user's credentials come with each call.
 *
 * @example
 * const identity = await new LdapAdapter().authenticate(config, servicePassword, 'alice', password);
 */
export class LdapAdapter {
  readonly #maxGroups: number;

  constructor(options: LdapAdapterOptions = {}) {
    this.#maxGroups = options.maxGroups ?? 1000;
  }

  async authenticate(config: LdapConnectionConfig, serviceBindPassword: string | undefined, username: string, password: string): Promise<ExternalIdentity> {
    // 1. Refuse locally whatever can be refused before a connection opens.
    const problems = ldapConnectionProblems(config);
    if (problems.length > 0) throw new SsoProviderUnavailableError(`The LDAP connection is misconfigured: ${problems.join('; ')}`);
    let serviceAccount: { dn: string; password: string } | undefined;
    if (config.bindDn !== undefined) {
      // An empty password would make the bind an unauthenticated one (RFC 4513 §5.1.2): anonymous in disguise.
      if (serviceBindPassword === undefined || serviceBindPassword === '') throw new SsoProviderUnavailableError('The LDAP service account has no password');
      serviceAccount = { dn: config.bindDn, password: serviceBindPassword };
    }
    if (username === '' || username.length > maxUsernameLength || controlCharacter.test(username)) throw invalidCredentials();
    // Same reason as above: an empty password would "succeed" as an unauthenticated bind.
    if (password === '' || password.length > maxPasswordLength) throw invalidCredentials();
    const settings = withDefaults(config);

    const service = await Session.open(settings);
    try {
      // 2. Find exactly one entry for the username.
      if (serviceAccount !== undefined) {
        await service.bind(serviceAccount.dn, serviceAccount.password, unavailableBecause('The LDAP server refused the service account'));
      }
      const entry = await findUser(service, settings, username);
      // 3. The directory checks the password: bind as the entry, on a separate connection.
      await verifyPassword(settings, entry.dn, password);
      // 4. Groups, then the identity.
      const groups =
        settings.memberOfAttribute !== undefined
          ? values(entry, settings.memberOfAttribute)
          : settings.groupBaseDn !== undefined
            ? await this.#findGroups(service, settings, settings.groupBaseDn, entry.dn)
            : [];
      return identity(settings, entry, groups);
    } finally {
      await service.close();
    }
  }

  async #findGroups(service: Session, settings: Settings, groupBaseDn: string, userDn: string): Promise<string[]> {
    const entries = await service.search(
      groupBaseDn,
      { filter: fillFilter(settings.groupFilter, '{dn}', userDn), attributes: [settings.groupNameAttribute], sizeLimit: this.#maxGroups + 1 },
      'The LDAP group search failed',
    );
    if (entries.length > this.#maxGroups) throw new SsoProtocolError('too_many_groups', `The user is in more than ${this.#maxGroups} LDAP groups`);
    return [...new Set(entries.flatMap((group) => values(group, settings.groupNameAttribute).slice(0, 1)))];
  }
}

async function findUser(service: Session, settings: Settings, username: string): Promise<Entry> {
  const attributes = [settings.emailAttribute, settings.givenNameAttribute, settings.familyNameAttribute, settings.subjectAttribute, settings.memberOfAttribute];
  const entries = await service.search(
    settings.userBaseDn,
    {
      filter: fillFilter(settings.userFilter, '{username}', username),
      attributes: [...new Set(attributes.filter((attribute) => attribute !== undefined))],
      // Two are enough to know the username is ambiguous.
      sizeLimit: 2,
    },
    'The LDAP user search failed',
  );
  const [entry, ...others] = entries;
  // None, or more than one: either way nobody is logged in, and the answer does not say which.
  if (entry === undefined || others.length > 0) throw invalidCredentials();
  return entry;
}

async function verifyPassword(settings: Settings, dn: string, password: string): Promise<void> {
  const session = await Session.open(settings);
  try {
    // 49 is the answer to a wrong password (and, by design, to a locked or unknown account). Any other code
    // (TLS required, simple binds disabled...) is the directory's setup, not the user's doing.
    await session.bind(dn, password, (error) =>
      error instanceof InvalidCredentialsError ? invalidCredentials(error) : unavailableBecause('The LDAP server refused the user bind')(error),
    );
  } finally {
    await session.close();
  }
}

function identity(settings: Settings, entry: Entry, groups: string[]): ExternalIdentity {
  let subject = entry.dn;
  if (settings.subjectAttribute !== undefined) {
    const [value, ...others] = values(entry, settings.subjectAttribute);
    if (value === undefined || others.length > 0) {
      throw new SsoProtocolError('invalid_subject', `The LDAP entry has no single ${settings.subjectAttribute} to identify it by`);
    }
    subject = value;
  }
  const email = values(entry, settings.emailAttribute)[0];
  return {
    subject,
    email,
    // The directory is the authority on its own addresses.
    emailVerified: email !== undefined,
    givenName: values(entry, settings.givenNameAttribute)[0],
    familyName: values(entry, settings.familyNameAttribute)[0],
    groups,
  };
}
