import { createHash, randomBytes } from 'node:crypto';
import { secretsEqual } from '../../../platform/secret-compare.ts';
import { Resolver } from 'node:dns/promises';
import type { Clock } from '../../../platform/clock.ts';
import type { Database, Queryable } from '../../../platform/db/database.ts';
import { BulwarkError, notFound } from '../../../platform/errors/bulwark-error.ts';
import { newId } from '../../../platform/ids.ts';
import { allTenantPermissions } from '../../access/permissions.ts';
import { type AccessService, assertHeld } from '../../access/service.ts';
import type { LoginAudit, LoginService } from '../login.ts';
import type { EnvelopeContext } from '../../keys/envelope.ts';
import type { KeyringService, Reencryptor, TenantKeys } from '../../keys/service.ts';
import type { IssuedRefresh, LoginSessionService } from '../../sessions/login-sessions.ts';
import { findLoginPolicy, upsertLoginPolicy } from '../mfa/store.ts';
import { normalizeEmail, stampLogin, type UsersService } from '../service.ts';
import { findLoginUserById, findUserIdByEmail } from '../store.ts';
import { type LdapAdapter, type LdapConnectionConfig, ldapConnectionProblems } from './ldap.ts';
import type { OidcAdapter, OidcConnectionConfig } from './oidc.ts';
import { type ExternalIdentity, SsoProtocolError, SsoProviderUnavailableError } from './protocol.ts';
import type { SamlAdapter, SamlConnectionConfig } from './saml.ts';
import { samlConnectionProblems } from './saml.ts';
import type { Connection, CreateConnectionBody, Domain, UpdateConnectionBody } from './schemas.ts';
import {
  type ConnectionFields,
  type ConnectionRow,
  consumeFlow,
  countConnections,
  countEnabledConnections,
  type RoleMapping,
  countConnectionsByKeyVersion,
  countDomains,
  deleteConnection,
  deleteDomain,
  type DomainRow,
  findConnection,
  findDomain,
  findLinkedUser,
  findVerifiedDomain,
  insertConnection,
  insertDomain,
  insertFlow,
  linkIdentity,
  listConnections,
  listDomains,
  listUserIdentities,
  lockStaleConnectionSecrets,
  markDomainVerified,
  rememberAssertion,
  resealConnectionSecret,
  setDomainConnection,
  stampIdentityLogin,
  updateConnection,
} from './store.ts';

export interface SsoOptions {
  /** The base URL browsers and providers reach Bulwark at (redirect URIs, SAML entity ids). */
  publicUrl: string;
  flowTtlMs: number;
  /** BULWARK_ENV is production: test-only connection settings are refused. */
  production: boolean;
  /** DNS servers for domain verification; undefined: the system's. */
  dnsServers: readonly string[] | undefined;
}

export interface SsoAdapters {
  oidc: OidcAdapter;
  saml: SamlAdapter;
  ldap: LdapAdapter;
}

// Bounds on what one tenant keeps; the lists answer all of it in one page.
export const maxConnections = 100;
export const maxDomains = 1000;
const sha256 = (value: string) => createHash('sha256').update(value).digest();
const verificationRecord = (domain: string) => `_bulwark-challenge.${domain}`;

function secretContext(tenantId: string, connectionId: string): EnvelopeContext {
  return { tenantId, table: 'sso_connections', column: 'secret', rowId: connectionId };
}

function flowContext(tenantId: string, flowId: string): EnvelopeContext {
  return { tenantId, table: 'sso_flows', column: 'sealed', rowId: flowId };
}

/** A provider's name fits a user's name field, or is left out. */
function personName(value: string | undefined): string | undefined {
  const trimmed = value?.trim().slice(0, 200);
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

interface FlowSecrets {
  /** SHA-256 (base64url) of the browser's flow cookie. */
  bindingHash?: string;
  nonce?: string;
  codeVerifier?: string;
  requestId?: string;
}

/**
 * Single sign-on per tenant: OIDC, SAML 2.0 and LDAP connections (secrets sealed with the tenant key, never
 * returned), the redirect flows (state, nonce, PKCE verifier and SAML request id kept server-side, single
 * use), SAML assertion replay protection, just-in-time provisioning, group-to-role mapping at every login,
 * the SSO requirement, and verified e-mail domains for home-realm discovery. The protocols themselves are
 * the adapters' (openid-client, node-saml, ldapts).
 */
export class SsoService implements Reencryptor {
  readonly name = 'sso_connections';
  readonly #db: Database;
  readonly #keyring: KeyringService;
  readonly #audit: LoginAudit;
  readonly #users: UsersService;
  readonly #access: AccessService;
  readonly #sessions: LoginSessionService;
  readonly #passwordLogin: LoginService;
  readonly #adapters: SsoAdapters;
  readonly #clock: Clock;
  readonly #options: SsoOptions;
  readonly #tenantStatus: (tenantId: string) => Promise<string | null>;

  constructor(
    db: Database,
    keyring: KeyringService,
    audit: LoginAudit,
    services: { users: UsersService; access: AccessService; sessions: LoginSessionService; login: LoginService; tenantStatus: (tenantId: string) => Promise<string | null> },
    adapters: SsoAdapters,
    clock: Clock,
    options: SsoOptions,
  ) {
    this.#db = db;
    this.#keyring = keyring;
    this.#audit = audit;
    this.#users = services.users;
    this.#access = services.access;
    this.#sessions = services.sessions;
    this.#passwordLogin = services.login;
    this.#tenantStatus = services.tenantStatus;
    this.#adapters = adapters;
    this.#clock = clock;
    this.#options = options;
    keyring.registerReencryptor(this);
  }

  /** Browsers reach this deployment over HTTPS (cookies are Secure, SAML flows bound to the browser). */
  get publicUrlIsHttps(): boolean {
    return this.#options.publicUrl.startsWith('https:');
  }

  /** The identity provider accounts linked to a user: which connection, since when, last used (never the subject). */
  async identitiesOf(tenantId: string, userId: string): Promise<{ connectionId: string; protocol: string; connectionName: string; linkedAt: string; lastLoginAt: string | null }[]> {
    const rows = await this.#db.withTenant(tenantId, (tx) => listUserIdentities(tx, tenantId, userId));
    return rows.map((row) => ({
      connectionId: row.connection_id,
      protocol: row.protocol,
      connectionName: row.name,
      linkedAt: row.created_at.toISOString(),
      lastLoginAt: row.last_login_at?.toISOString() ?? null,
    }));
  }

  // --- connections ---

  async list(tenantId: string): Promise<{ items: Connection[] }> {
    const rows = await this.#db.withTenant(tenantId, (tx) => listConnections(tx, tenantId));
    return { items: rows.map((row) => this.#toConnection(tenantId, row)) };
  }

  async get(tenantId: string, connectionId: string): Promise<Connection> {
    const row = await this.#db.withTenant(tenantId, (tx) => findConnection(tx, tenantId, connectionId));
    if (row === undefined) throw notFound();
    return this.#toConnection(tenantId, row);
  }

  /**
   * `caller`: the permissions of whoever creates it. A connection logs people in: its group mappings may
   * give only roles the caller could give by hand, and linking by e-mail (which reaches every existing
   * account, administrators included) needs every tenant permission.
   */
  async create(tenantId: string, input: CreateConnectionBody, caller: ReadonlySet<string>): Promise<Connection> {
    assertConfigUsable(input.protocol, input.config, this.#options.production);
    await this.#assertMayConfigure(tenantId, { roleMappings: input.roleMappings ?? [], linkByEmail: input.linkByEmail ?? false }, caller);
    const id = newId();
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        if ((await countConnections(tx, tenantId)) >= maxConnections) throw new BulwarkError('conflict', { message: `A tenant has at most ${maxConnections} SSO connections.` });
        const fields: ConnectionFields = {
          name: input.name,
          enabled: input.enabled ?? true,
          config: input.config,
          secret: 'secret' in input && input.secret !== undefined ? keys.seal(Buffer.from(input.secret, 'utf8'), secretContext(tenantId, id)) : null,
          roleMappings: input.roleMappings ?? [],
          jitProvisioning: input.jitProvisioning ?? true,
          linkByEmail: input.linkByEmail ?? false,
        };
        const row = await insertConnection(tx, tenantId, id, input.protocol, fields, this.#clock.now());
        if (row === undefined) throw new BulwarkError('conflict', { detail: 'connection id collision' });
        await this.#audit.record(tx, { tenantId }, { action: 'sso.connection.create', target: { type: 'sso-connection', id }, detail: { protocol: input.protocol, name: input.name } });
        return this.#toConnection(tenantId, row);
      }),
    );
  }

  async update(tenantId: string, connectionId: string, change: UpdateConnectionBody, caller: ReadonlySet<string>): Promise<Connection> {
    if (change.config !== undefined) assertConfigUsable(change.protocol, change.config, this.#options.production);
    await this.#assertMayConfigure(tenantId, { roleMappings: change.roleMappings ?? [], linkByEmail: change.linkByEmail === true }, caller);
    return this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const row = await findConnection(tx, tenantId, connectionId, { forUpdate: true });
        if (row === undefined) throw notFound();
        if (row.protocol !== change.protocol) throw new BulwarkError('validation_failed', { message: `This is an ${row.protocol} connection; its protocol cannot change.` });
        const newSecret = 'secret' in change && change.secret !== undefined ? keys.seal(Buffer.from(change.secret, 'utf8'), secretContext(tenantId, connectionId)) : undefined;
        const fields: ConnectionFields = {
          name: change.name ?? row.name,
          enabled: change.enabled ?? row.enabled,
          config: (change.config as Record<string, unknown> | undefined) ?? row.config,
          secret: newSecret ?? (row.secret === null || row.key_version === null ? null : { ciphertext: row.secret, keyVersion: row.key_version }),
          roleMappings: change.roleMappings ?? row.role_mappings,
          jitProvisioning: change.jitProvisioning ?? row.jit_provisioning,
          linkByEmail: change.linkByEmail ?? row.link_by_email,
        };
        if (row.enabled && !fields.enabled) await this.#assertNotLastRequired(tx, tenantId, connectionId);
        const updated = await updateConnection(tx, tenantId, connectionId, fields, this.#clock.now());
        const changed = Object.keys(change).filter((key) => key !== 'protocol' && key !== 'secret');
        await this.#audit.record(tx, { tenantId }, {
          action: 'sso.connection.update',
          target: { type: 'sso-connection', id: connectionId },
          detail: { changed: changed.sort(), secretReplaced: newSecret !== undefined },
        });
        return this.#toConnection(tenantId, updated);
      }),
    );
  }

  async delete(tenantId: string, connectionId: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      const row = await findConnection(tx, tenantId, connectionId, { forUpdate: true });
      if (row === undefined) throw notFound();
      if (row.enabled) await this.#assertNotLastRequired(tx, tenantId, connectionId);
      await deleteConnection(tx, tenantId, connectionId);
      await this.#audit.record(tx, { tenantId }, { action: 'sso.connection.delete', target: { type: 'sso-connection', id: connectionId } });
    });
  }

  // --- the SSO requirement ---

  async policy(tenantId: string): Promise<{ required: boolean; breakGlassUserIds: string[]; updatedAt: string | null }> {
    const row = await this.#db.withTenant(tenantId, (tx) => findLoginPolicy(tx, tenantId));
    return { required: row?.sso_required ?? false, breakGlassUserIds: row?.sso_break_glass ?? [], updatedAt: row?.updated_at.toISOString() ?? null };
  }

  async setPolicy(tenantId: string, input: { required: boolean; breakGlassUserIds?: string[] | undefined }) {
    const breakGlass = input.breakGlassUserIds ?? [];
    for (const userId of breakGlass) await this.#users.get(tenantId, userId).catch(() => {
      throw new BulwarkError('validation_failed', { message: `There is no user ${userId}.` });
    });
    return this.#db.withTenant(tenantId, async (tx) => {
      if (input.required && (await countEnabledConnections(tx, tenantId, undefined)) === 0) {
        throw new BulwarkError('conflict', { message: 'Create (or enable) an SSO connection before requiring SSO: nobody could log in.' });
      }
      const row = await upsertLoginPolicy(tx, tenantId, { ssoRequired: input.required, ssoBreakGlass: breakGlass }, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'sso-policy.update', detail: { required: input.required, breakGlassUserIds: breakGlass } });
      return { required: row.sso_required, breakGlassUserIds: row.sso_break_glass, updatedAt: row.updated_at.toISOString() };
    });
  }

  async #assertMayConfigure(tenantId: string, change: { roleMappings: readonly RoleMapping[]; linkByEmail: boolean }, caller: ReadonlySet<string>): Promise<void> {
    await this.#access.assertMayMapRoles(tenantId, change.roleMappings.map((mapping) => mapping.role), caller);
    if (change.linkByEmail) assertHeld(caller, allTenantPermissions);
  }

  /** While SSO is required, the last enabled connection stays: without it nobody but break-glass users could log in. */
  async #assertNotLastRequired(tx: Queryable, tenantId: string, connectionId: string): Promise<void> {
    if ((await findLoginPolicy(tx, tenantId))?.sso_required !== true) return;
    if ((await countEnabledConnections(tx, tenantId, connectionId)) === 0) {
      throw new BulwarkError('conflict', { message: 'The tenant requires SSO and this is its last enabled connection: stop requiring SSO first.' });
    }
  }

  // --- redirect logins (OIDC, SAML) ---

  /**
   * Where to send the browser: the provider's authorization (OIDC) or SSO (SAML) URL for a new flow. The
   * browser that starts a flow must be the one that finishes it (no login CSRF): it holds `binding` in a
   * cookie, the flow keeps its hash. OIDC returns by a top-level GET, which carries a Lax cookie. SAML returns
   * by a cross-site POST, which carries only a `SameSite=None; Secure` cookie: over HTTPS the binding is
   * required; over plain HTTP (development) only InResponseTo ties the answer to the request.
   */
  async start(tenantId: string, connectionId: string, options: { https: boolean }): Promise<{ url: string; binding: string | undefined; crossSitePost: boolean }> {
    const connection = await this.#usableConnection(tenantId, connectionId, ['oidc', 'saml']);
    const bound = connection.protocol === 'oidc' || options.https;
    const binding = bound ? randomBytes(32).toString('base64url') : undefined;
    const bindingHash = binding === undefined ? {} : { bindingHash: sha256(binding).toString('base64url') };
    let url: string;
    let state: string;
    let secrets: FlowSecrets;
    try {
      if (connection.protocol === 'oidc') {
        const started = await this.#adapters.oidc.start(connection.config as OidcConnectionConfig, this.#endpoint(tenantId, connectionId, 'callback'));
        ({ url, state } = started);
        secrets = { nonce: started.nonce, codeVerifier: started.codeVerifier, ...bindingHash };
      } else {
        state = randomBytes(32).toString('base64url');
        const started = await this.#adapters.saml.authorizeUrl(connection.config as SamlConnectionConfig, this.#serviceProvider(tenantId, connectionId), state);
        url = started.url;
        secrets = { requestId: started.requestId, ...bindingHash };
      }
    } catch (error) {
      throw asBulwarkError(error);
    }
    await this.#keyring.withKeys(tenantId, (keys) =>
      this.#db.withTenant(tenantId, async (tx) => {
        const id = newId();
        const now = this.#clock.now();
        const sealed = keys.seal(Buffer.from(JSON.stringify(secrets), 'utf8'), flowContext(tenantId, id));
        const inserted = await insertFlow(tx, { tenantId, id, connectionId, stateHash: sha256(state), sealed, expiresAt: new Date(now.getTime() + this.#options.flowTtlMs), now });
        if (!inserted) throw new BulwarkError('conflict', { detail: 'flow id collision' });
      }),
    );
    return { url, binding, crossSitePost: connection.protocol === 'saml' };
  }

  /** The OIDC redirect back: code exchange and ID token checks, then the login. */
  async finishOidc(tenantId: string, connectionId: string, callbackUrl: URL, binding: string | undefined, source: string): Promise<IssuedRefresh> {
    const connection = await this.#usableConnection(tenantId, connectionId, ['oidc']);
    const state = callbackUrl.searchParams.get('state') ?? '';
    return this.#login(tenantId, connection, source, async (keys) => {
      const secrets = await this.#spendFlow(tenantId, connectionId, state, keys);
      if (secrets.nonce === undefined || secrets.codeVerifier === undefined || secrets.bindingHash === undefined) throw new SsoProtocolError('state_mismatch', 'The flow is not an OIDC flow.');
      assertSameBrowser(secrets, binding);
      const clientSecret = this.#secretOf(tenantId, connection, keys);
      return this.#adapters.oidc.finish(connection.config as OidcConnectionConfig, clientSecret ?? '', this.#endpoint(tenantId, connectionId, 'callback'), callbackUrl, {
        state,
        nonce: secrets.nonce,
        codeVerifier: secrets.codeVerifier,
      });
    });
  }

  /** The SAML POST back: signature, audience, recipient, time and InResponseTo checks, replay, then the login. */
  async finishSaml(tenantId: string, connectionId: string, samlResponse: string, relayState: string | undefined, binding: string | undefined, source: string): Promise<IssuedRefresh> {
    const connection = await this.#usableConnection(tenantId, connectionId, ['saml']);
    return this.#login(tenantId, connection, source, async (keys) => {
      const flow = relayState === undefined ? undefined : await this.#spendFlow(tenantId, connectionId, relayState, keys);
      if (flow !== undefined && flow.requestId === undefined) throw new SsoProtocolError('in_response_to_mismatch', 'The flow is not a SAML flow.');
      if (flow?.bindingHash !== undefined) assertSameBrowser(flow, binding);
      const requestId = flow?.requestId;
      const validated = await this.#adapters.saml.validate(connection.config as SamlConnectionConfig, this.#serviceProvider(tenantId, connectionId), samlResponse, { requestId });
      const fresh = await this.#db.withTenant(tenantId, (tx) =>
        rememberAssertion(tx, tenantId, connectionId, sha256(validated.assertionId), validated.notOnOrAfter, this.#clock.now()),
      );
      if (!fresh) throw new SsoProtocolError('replayed', 'This assertion was used before.');
      return validated.identity;
    });
  }

  async metadata(tenantId: string, connectionId: string): Promise<string> {
    const connection = await this.#usableConnection(tenantId, connectionId, ['saml'], { evenDisabled: true });
    return this.#adapters.saml.metadata(connection.config as SamlConnectionConfig, this.#serviceProvider(tenantId, connectionId));
  }

  /** LDAP: the user's own bind against the directory, then the login. */
  async loginLdap(input: { tenantId: string; connectionId: string; username: string; password: string }, source: string): Promise<IssuedRefresh> {
    const { tenantId, connectionId } = input;
    const connection = await this.#usableConnection(tenantId, connectionId, ['ldap']);
    return this.#login(
      tenantId,
      connection,
      source,
      async (keys) => this.#adapters.ldap.authenticate(connection.config as LdapConnectionConfig, this.#secretOf(tenantId, connection, keys), input.username, input.password),
      { directoryUsername: input.username },
    );
  }

  // --- e-mail domains and home-realm discovery ---

  async listDomains(tenantId: string): Promise<{ items: Domain[] }> {
    const rows = await this.#db.withTenant(tenantId, (tx) => listDomains(tx, tenantId));
    return { items: rows.map(toDomain) };
  }

  async claimDomain(tenantId: string, domain: string, connectionId: string | null | undefined): Promise<Domain> {
    return this.#db.withTenant(tenantId, async (tx) => {
      if ((await countDomains(tx, tenantId)) >= maxDomains) throw new BulwarkError('conflict', { message: `A tenant has at most ${maxDomains} domains.` });
      if (connectionId != null && (await findConnection(tx, tenantId, connectionId)) === undefined) throw new BulwarkError('validation_failed', { message: 'There is no such SSO connection.' });
      const token = randomBytes(24).toString('base64url');
      const row = await insertDomain(tx, tenantId, domain, token, connectionId ?? null, this.#clock.now());
      if (row === undefined) throw new BulwarkError('conflict', { message: 'The tenant has claimed this domain already.' });
      await this.#audit.record(tx, { tenantId }, { action: 'domain.claim', target: { type: 'domain', id: domain } });
      return toDomain(row);
    });
  }

  /**
   * Looks the domain's TXT record up and marks it verified when it carries the token. A domain another
   * tenant verified first stays theirs (409).
   */
  async verifyDomain(tenantId: string, domain: string): Promise<Domain> {
    const claimed = await this.#db.withTenant(tenantId, (tx) => findDomain(tx, tenantId, domain));
    if (claimed === undefined) throw notFound();
    if (claimed.verified_at !== null) return toDomain(claimed);
    const expected = `bulwark-domain-verification=${claimed.verification_token}`;
    const records = await this.#txtRecords(verificationRecord(domain));
    if (!records.includes(expected)) throw new BulwarkError('domain_not_verified', { message: `No TXT record at ${verificationRecord(domain)} carries the verification value.` });
    return this.#db.withTenant(tenantId, async (tx) => {
      try {
        const row = await markDomainVerified(tx, tenantId, domain, this.#clock.now());
        await this.#audit.record(tx, { tenantId }, { action: 'domain.verify', target: { type: 'domain', id: domain } });
        return toDomain(row);
      } catch (error) {
        if (isUniqueViolation(error)) throw new BulwarkError('conflict', { message: 'Another tenant verified this domain.' });
        throw error;
      }
    });
  }

  async updateDomain(tenantId: string, domain: string, connectionId: string | null): Promise<Domain> {
    return this.#db.withTenant(tenantId, async (tx) => {
      if ((await findDomain(tx, tenantId, domain)) === undefined) throw notFound();
      if (connectionId !== null && (await findConnection(tx, tenantId, connectionId)) === undefined) throw new BulwarkError('validation_failed', { message: 'There is no such SSO connection.' });
      const row = await setDomainConnection(tx, tenantId, domain, connectionId);
      await this.#audit.record(tx, { tenantId }, { action: 'domain.update', target: { type: 'domain', id: domain }, detail: { connectionId } });
      return toDomain(row);
    });
  }

  async deleteDomain(tenantId: string, domain: string): Promise<void> {
    await this.#db.withTenant(tenantId, async (tx) => {
      if (!(await deleteDomain(tx, tenantId, domain))) throw notFound();
      await this.#audit.record(tx, { tenantId }, { action: 'domain.delete', target: { type: 'domain', id: domain } });
    });
  }

  /**
   * Home-realm discovery: the tenant that verified the address's domain and the connection its users log in
   * with. Only verified domains answer, so nobody can steer another organisation's users by claiming theirs.
   */
  async discover(email: string): Promise<{ tenantId: string | null; connection: { id: string; protocol: string; name: string; start: string } | null }> {
    const domain = normalizeEmail(email).split('@').pop() ?? '';
    const found = await this.#db.withPlatform(async (tx) => {
      const verified = await findVerifiedDomain(tx, domain);
      if (verified === undefined) return undefined;
      const connection = verified.connection_id === null ? undefined : await findConnection(tx, verified.tenant_id, verified.connection_id);
      return { tenantId: verified.tenant_id, connection };
    });
    if (found === undefined || (await this.#tenantStatus(found.tenantId)) !== 'active') return { tenantId: null, connection: null };
    const connection = found.connection?.enabled === true ? found.connection : undefined;
    return {
      tenantId: found.tenantId,
      connection:
        connection === undefined
          ? null
          : {
              id: connection.id,
              protocol: connection.protocol,
              name: connection.name,
              start: connection.protocol === 'ldap' ? `${this.#options.publicUrl}/v1/auth/ldap` : this.#endpoint(found.tenantId, connection.id, 'start'),
            },
    };
  }

  // --- Reencryptor: connection secrets follow the tenant's key rotation (flows live minutes) ---

  countByKeyVersion(tx: Queryable, tenantId: string): Promise<{ key_version: number | null; count: number }[]> {
    return countConnectionsByKeyVersion(tx, tenantId);
  }

  async reencryptBatch(tenantId: string, keys: TenantKeys, limit: number): Promise<number> {
    return this.#db.withTenant(tenantId, async (tx) => {
      const rows = await lockStaleConnectionSecrets(tx, tenantId, keys.current, keys.minDecryption, limit);
      for (const row of rows) {
        const context = secretContext(tenantId, row.id);
        await resealConnectionSecret(tx, tenantId, row.id, keys.seal(keys.open(row.secret, context, 'data_integrity_failed'), context));
      }
      return rows.length;
    });
  }

  // --- steps ---

  /**
   * One SSO login: the provider vouches (`verify`), the identity is linked or provisioned, the mapped roles
   * are applied and the session starts, in one transaction with the `auth.sso` event. A refusal is audited
   * with its reason and answered 401 sso_failed (the reason stays in the trail, not the answer).
   */
  async #login(
    tenantId: string,
    connection: ConnectionRow,
    source: string,
    verify: (keys: TenantKeys) => Promise<ExternalIdentity>,
    options: { directoryUsername?: string } = {},
  ): Promise<IssuedRefresh> {
    const target = { type: 'sso-connection', id: connection.id };
    return this.#keyring.withKeys(tenantId, async (keys) => {
      // A password the directory checks is throttled like ours (per username and per source), before it is tried.
      const throttle =
        options.directoryUsername === undefined
          ? undefined
          : await this.#passwordLogin.reserveDirectoryCheck(tenantId, keys, { connectionId: connection.id, username: options.directoryUsername, source });
      let identity: ExternalIdentity;
      try {
        identity = await verify(keys);
      } catch (error) {
        const refusal = asBulwarkError(error);
        if (refusal.code === 'sso_failed' || refusal.code === 'sso_provider_unavailable') {
          const event = {
            action: 'auth.sso' as const,
            outcome: 'failure' as const,
            actor: { kind: 'anonymous' as const, id: null },
            target,
            // The source address is in the event's sealed personal data (from the request), not in clear here.
            detail: { protocol: connection.protocol, reason: error instanceof SsoProtocolError ? error.reason : refusal.code },
          };
          // A wrong directory password earns its delay or lockout; an unreachable directory does not.
          if (throttle !== undefined && refusal.code === 'sso_failed') await this.#passwordLogin.refuseDirectoryCheck(tenantId, keys, throttle, event);
          else {
            if (throttle !== undefined) await this.#passwordLogin.releaseDirectoryCheck(tenantId, throttle);
            await this.#audit.recordAlone({ tenantId }, event);
          }
        }
        throw refusal;
      }
      const subjectHmac = keys.lookupHash(`sso:${connection.id}:${identity.subject}`);
      // Linking and account refusals are audited like the protocol's: "why could they not log in?" is the admin's first question.
      const refused = async (error: unknown): Promise<never> => {
        // The directory accepted the password: like a right password refused for the account, the check
        // counts as passed, so a disabled or unlinked user is not locked out for it.
        if (throttle !== undefined && error instanceof BulwarkError) await this.#db.withTenant(tenantId, (tx) => this.#passwordLogin.settleDirectoryCheck(tx, tenantId, keys, throttle));
        return this.#recordRefusal(tenantId, connection, error);
      };
      const { userId, provisioned } = await this.#linkedUser(tenantId, connection, identity, subjectHmac, keys).catch(refused);
      const managed = [...new Set(connection.role_mappings.map((mapping) => mapping.role))];
      const groups = new Set(identity.groups);
      const granted = [...new Set(connection.role_mappings.filter((mapping) => groups.has(mapping.group)).map((mapping) => mapping.role))];
      await this.#audit.prepareSubject({ tenantId }, { kind: 'user', id: userId });
      return this.#db.withTenant(tenantId, async (tx) => {
        const account = await findLoginUserById(tx, tenantId, userId);
        if (account?.status !== 'active') throw new BulwarkError(account === undefined ? 'sso_user_not_provisioned' : 'account_disabled');
        const now = this.#clock.now();
        if (throttle !== undefined) await this.#passwordLogin.settleDirectoryCheck(tx, tenantId, keys, throttle);
        await stampIdentityLogin(tx, tenantId, connection.id, subjectHmac, now);
        await stampLogin(tx, keys, tenantId, account, now);
        await this.#access.syncMappedRoles(tx, tenantId, userId, { managed, granted }, connection.id);
        const issued = await this.#sessions.startIn(tx, tenantId, userId);
        await this.#audit.record(tx, { tenantId }, {
          action: 'auth.sso',
          actor: { kind: 'user', id: userId },
          target,
          sessionId: issued.sessionId,
          detail: { protocol: connection.protocol, provisioned, groups: identity.groups.length },
        });
        return issued;
      }).catch(refused);
    });
  }

  async #recordRefusal(tenantId: string, connection: ConnectionRow, error: unknown): Promise<never> {
    if (error instanceof BulwarkError && (error.code === 'sso_user_not_provisioned' || error.code === 'account_disabled')) {
      await this.#audit.recordAlone({ tenantId }, {
        action: 'auth.sso',
        outcome: 'failure',
        actor: { kind: 'anonymous', id: null },
        target: { type: 'sso-connection', id: connection.id },
        detail: { protocol: connection.protocol, reason: error.code },
      });
    }
    throw error;
  }

  /**
   * The user behind an identity: its link; or, the first time, the user with the same address when the
   * connection trusts the provider's addresses; or a new user (just-in-time), linked in its creating transaction.
   */
  async #linkedUser(tenantId: string, connection: ConnectionRow, identity: ExternalIdentity, subjectHmac: Buffer, keys: TenantKeys): Promise<{ userId: string; provisioned: boolean }> {
    const linked = await this.#db.withTenant(tenantId, (tx) => findLinkedUser(tx, tenantId, connection.id, subjectHmac));
    if (linked !== undefined) return { userId: linked, provisioned: false };
    const email = identity.email === undefined ? undefined : normalizeEmail(identity.email);
    if (email === undefined || !/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 254) {
      throw new BulwarkError('sso_user_not_provisioned', { message: 'The identity provider sent no usable e-mail address for this new identity.' });
    }
    const link = async (tx: Queryable, userId: string) => {
      await linkIdentity(tx, tenantId, connection.id, subjectHmac, userId, this.#clock.now());
      await this.#audit.record(tx, { tenantId }, { action: 'sso.identity.link', target: { type: 'user', id: userId }, detail: { connectionId: connection.id } });
    };
    const existing = await this.#db.withTenant(tenantId, (tx) => findUserIdByEmail(tx, tenantId, keys.lookupHash(email)));
    if (existing !== undefined) {
      if (!connection.link_by_email || !identity.emailVerified) {
        throw new BulwarkError('sso_user_not_provisioned', { message: 'A user with this e-mail address exists, and the connection does not link by e-mail.' });
      }
      await this.#db.withTenant(tenantId, (tx) => link(tx, existing));
      return { userId: existing, provisioned: false };
    }
    if (!connection.jit_provisioning) throw new BulwarkError('sso_user_not_provisioned');
    const firstName = personName(identity.givenName);
    const lastName = personName(identity.familyName);
    const user = await this.#users.create(
      tenantId,
      { email, ...(firstName === undefined ? {} : { firstName }), ...(lastName === undefined ? {} : { lastName }) },
      { roles: { names: [], grant: (tx, userId) => link(tx, userId) } },
    );
    return { userId: user.id, provisioned: true };
  }

  async #spendFlow(tenantId: string, connectionId: string, state: string, keys: TenantKeys): Promise<FlowSecrets> {
    const flow = state === '' ? undefined : await this.#db.withTenant(tenantId, (tx) => consumeFlow(tx, tenantId, connectionId, sha256(state), this.#clock.now()));
    if (flow === undefined) throw new SsoProtocolError('state_mismatch', 'Unknown, spent or expired login flow.');
    return JSON.parse(keys.open(flow.sealed, flowContext(tenantId, flow.id), 'data_integrity_failed').toString('utf8')) as FlowSecrets;
  }

  async #usableConnection(tenantId: string, connectionId: string, protocols: readonly string[], options: { evenDisabled?: boolean } = {}): Promise<ConnectionRow> {
    if ((await this.#tenantStatus(tenantId)) !== 'active') throw notFound();
    const row = await this.#db.withTenant(tenantId, (tx) => findConnection(tx, tenantId, connectionId));
    if (row === undefined || !protocols.includes(row.protocol) || (!row.enabled && options.evenDisabled !== true)) throw notFound();
    return row;
  }

  #secretOf(tenantId: string, connection: ConnectionRow, keys: TenantKeys): string | undefined {
    return connection.secret === null ? undefined : keys.open(connection.secret, secretContext(tenantId, connection.id), 'data_integrity_failed').toString('utf8');
  }

  #endpoint(tenantId: string, connectionId: string, what: 'start' | 'callback' | 'acs' | 'metadata'): string {
    return `${this.#options.publicUrl}/v1/sso/${tenantId}/${connectionId}/${what}`;
  }

  #serviceProvider(tenantId: string, connectionId: string) {
    return { entityId: this.#endpoint(tenantId, connectionId, 'metadata'), acsUrl: this.#endpoint(tenantId, connectionId, 'acs') };
  }

  #toConnection(tenantId: string, row: ConnectionRow): Connection {
    const endpoints =
      row.protocol === 'oidc'
        ? { start: this.#endpoint(tenantId, row.id, 'start'), redirectUri: this.#endpoint(tenantId, row.id, 'callback') }
        : row.protocol === 'saml'
          ? { start: this.#endpoint(tenantId, row.id, 'start'), acsUrl: this.#endpoint(tenantId, row.id, 'acs'), entityId: this.#endpoint(tenantId, row.id, 'metadata') }
          : { login: `${this.#options.publicUrl}/v1/auth/ldap` };
    return {
      id: row.id,
      protocol: row.protocol,
      name: row.name,
      enabled: row.enabled,
      config: row.config,
      secretSet: row.secret !== null,
      roleMappings: row.role_mappings,
      jitProvisioning: row.jit_provisioning,
      linkByEmail: row.link_by_email,
      endpoints,
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
    };
  }

  async #txtRecords(name: string): Promise<string[]> {
    const resolver = new Resolver({ timeout: 3_000, tries: 2 });
    if (this.#options.dnsServers !== undefined) resolver.setServers([...this.#options.dnsServers]);
    try {
      return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
      throw new BulwarkError('service_unavailable', { message: 'DNS did not answer; retry later.', cause: error });
    }
  }
}

/**
 * Cross-field checks the schema cannot state (e.g. an LDAP url that does not match its security). In
 * production the test-only escapes (plain-HTTP providers, plain LDAP) are refused outright.
 */
function assertConfigUsable(protocol: 'oidc' | 'saml' | 'ldap', config: unknown, production: boolean): void {
  const problems =
    protocol === 'ldap' ? ldapConnectionProblems(config as LdapConnectionConfig) : protocol === 'saml' ? samlConnectionProblems(config as SamlConnectionConfig) : [];
  const settings = config as { allowInsecureHttp?: boolean; allowInsecure?: boolean };
  if (production && (settings.allowInsecureHttp === true || settings.allowInsecure === true)) problems.push('allowInsecureHttp and allowInsecure are for tests and refused in production');
  if (problems.length > 0) {
    // The same `errors` member as a schema refusal: each problem is about the config.
    throw new BulwarkError('validation_failed', {
      message: `The connection settings do not work: ${problems.map((problem) => problem.replace(/\.$/, '')).join('; ')}.`,
      extensions: { errors: problems.map((message) => ({ in: 'body', path: '/config', message })) },
    });
  }
}

function assertSameBrowser(flow: FlowSecrets, binding: string | undefined): void {
  if (flow.bindingHash === undefined || binding === undefined || !secretsEqual(sha256(binding).toString('base64url'), flow.bindingHash)) {
    throw new SsoProtocolError('browser_mismatch', 'The login was finished in another browser than the one that started it.');
  }
}

function asBulwarkError(error: unknown): BulwarkError {
  if (error instanceof BulwarkError) return error;
  if (error instanceof SsoProtocolError) return new BulwarkError('sso_failed', { detail: error.reason, cause: error });
  if (error instanceof SsoProviderUnavailableError) return new BulwarkError('sso_provider_unavailable', { cause: error });
  throw error;
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '23505';
}

function toDomain(row: DomainRow): Domain {
  return {
    domain: row.domain,
    connectionId: row.connection_id,
    verified: row.verified_at !== null,
    verifiedAt: row.verified_at?.toISOString() ?? null,
    verification: { type: 'dns-txt', name: verificationRecord(row.domain), value: `bulwark-domain-verification=${row.verification_token}` },
    createdAt: row.created_at.toISOString(),
  };
}
