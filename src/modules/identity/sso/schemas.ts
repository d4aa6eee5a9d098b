import { Type, type Static } from 'typebox';
import { idPattern } from '../../../platform/ids.ts';
import { tenantId } from '../../tenancy/schemas.ts';
import { userId } from '../schemas.ts';
import { ldapConnectionConfig } from './ldap.ts';
import { oidcConnectionConfig } from './oidc.ts';
import { samlConnectionConfig } from './saml.ts';

export const connectionId = Type.String({ pattern: idPattern, description: 'SSO connection id: 12 lowercase hex characters.' });
export const connectionParams = Type.Object({ tenantId, connectionId }, { additionalProperties: false });

const name = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S', description: 'Shown on the login page, e.g. "Okta" or "Corporate directory".' });
const secret = Type.String({
  minLength: 1,
  maxLength: 4096,
  description: "OIDC: the client secret. LDAP: the service account's bind password. Write-only: sealed with the tenant key, never returned.",
});
const roleMapping = Type.Object(
  {
    group: Type.String({ minLength: 1, maxLength: 256, description: 'A group name as the identity provider sends it.' }),
    role: Type.String({ minLength: 1, maxLength: 64, description: 'A tenant role (built-in or custom).' }),
  },
  { additionalProperties: false },
);
const roleMappings = Type.Array(roleMapping, {
  maxItems: 200,
  description: 'At every login, each role named here is given when one of its groups is among the user’s groups and taken away when none is. Roles named nowhere here are left alone.',
});
const common = {
  name,
  enabled: Type.Optional(Type.Boolean({ description: 'Default true. A disabled connection refuses logins.' })),
  roleMappings: Type.Optional(roleMappings),
  jitProvisioning: Type.Optional(Type.Boolean({ description: 'Create a user at the first login of an unknown identity. Default true.' })),
  linkByEmail: Type.Optional(
    Type.Boolean({
      description: "Link an identity to the existing user with the same (provider-verified) e-mail address. Default false: only trust a provider's addresses that it owns.",
    }),
  ),
};

const updatable = {
  name: Type.Optional(name),
  enabled: common.enabled,
  roleMappings: common.roleMappings,
  jitProvisioning: common.jitProvisioning,
  linkByEmail: common.linkByEmail,
};
const strict = { additionalProperties: false } as const;
const oidc = {
  create: Type.Object({ protocol: Type.Literal('oidc'), ...common, config: oidcConnectionConfig, secret }, strict),
  update: Type.Object({ protocol: Type.Literal('oidc'), ...updatable, config: Type.Optional(oidcConnectionConfig), secret: Type.Optional(secret) }, strict),
};
const saml = {
  create: Type.Object({ protocol: Type.Literal('saml'), ...common, config: samlConnectionConfig }, strict),
  update: Type.Object({ protocol: Type.Literal('saml'), ...updatable, config: Type.Optional(samlConnectionConfig) }, strict),
};
const ldap = {
  create: Type.Object({ protocol: Type.Literal('ldap'), ...common, config: ldapConnectionConfig, secret: Type.Optional(secret) }, strict),
  update: Type.Object({ protocol: Type.Literal('ldap'), ...updatable, config: Type.Optional(ldapConnectionConfig), secret: Type.Optional(secret) }, strict),
};

export const createConnectionBody = Type.Union([oidc.create, saml.create, ldap.create]);
export type CreateConnectionBody = Static<typeof createConnectionBody>;
export const updateConnectionBody = Type.Union([oidc.update, saml.update, ldap.update], { description: '`protocol` must be the connection’s own; members left out stay as they are.' });
export type UpdateConnectionBody = Static<typeof updateConnectionBody>;

export const connection = Type.Object({
  id: Type.String(),
  protocol: Type.Union([Type.Literal('oidc'), Type.Literal('saml'), Type.Literal('ldap')]),
  name: Type.String(),
  enabled: Type.Boolean(),
  config: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true, description: 'The protocol settings as given (no secret).' }),
  secretSet: Type.Boolean({ description: 'Whether a secret is stored (it is never returned).' }),
  roleMappings: Type.Array(Type.Object({ group: Type.String(), role: Type.String() })),
  jitProvisioning: Type.Boolean(),
  linkByEmail: Type.Boolean(),
  endpoints: Type.Object(
    {
      start: Type.Optional(Type.String({ description: 'Send the browser here to log in (OIDC, SAML).' })),
      redirectUri: Type.Optional(Type.String({ description: 'OIDC: register this redirect URI at the provider.' })),
      acsUrl: Type.Optional(Type.String({ description: 'SAML: the assertion consumer service URL.' })),
      entityId: Type.Optional(Type.String({ description: 'SAML: the service provider entity id (also its metadata URL).' })),
      login: Type.Optional(Type.String({ description: 'LDAP: POST username and password here.' })),
    },
    { description: 'Where the provider and the browser meet this connection.' },
  ),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type Connection = Static<typeof connection>;
export const connectionList = Type.Object({ items: Type.Array(connection) });

export const ssoPolicy = Type.Object({
  required: Type.Boolean({ description: 'Password login is refused (403 sso_required) for every user except the break-glass ones.' }),
  breakGlassUserIds: Type.Array(Type.String(), { description: 'Users who keep password login, for when the identity provider fails.' }),
  updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export const ssoPolicyBody = Type.Object(
  {
    required: Type.Boolean(),
    breakGlassUserIds: Type.Optional(Type.Array(userId, { maxItems: 5, uniqueItems: true, description: 'At most 5 users; each must exist. Default none.' })),
  },
  { additionalProperties: false },
);

export const callbackQuery = Type.Object(
  {
    code: Type.Optional(Type.String({ maxLength: 4096 })),
    state: Type.Optional(Type.String({ maxLength: 512 })),
    iss: Type.Optional(Type.String({ maxLength: 2048 })),
    error: Type.Optional(Type.String({ maxLength: 256 })),
    error_description: Type.Optional(Type.String({ maxLength: 2048 })),
    error_uri: Type.Optional(Type.String({ maxLength: 2048 })),
    session_state: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const acsBody = Type.Object(
  {
    SAMLResponse: Type.String({ minLength: 1, maxLength: 262_144, description: 'The base64 SAML Response (HTTP-POST binding).' }),
    RelayState: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const ldapLoginBody = Type.Object(
  {
    tenantId,
    connectionId,
    username: Type.String({ minLength: 1, maxLength: 256, description: "The directory's user name (as the connection's userFilter matches it)." }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

const domainName = Type.String({
  minLength: 3,
  maxLength: 253,
  pattern: '^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$',
  description: 'An e-mail domain, lowercase (`example.com`).',
});
export const domainParams = Type.Object({ tenantId, domain: domainName }, { additionalProperties: false });
export const claimDomainBody = Type.Object({ domain: domainName, connectionId: Type.Optional(Type.Union([connectionId, Type.Null()])) }, { additionalProperties: false });
export const updateDomainBody = Type.Object({ connectionId: Type.Union([connectionId, Type.Null()], { description: 'Where users of the domain log in; null: password login.' }) }, { additionalProperties: false });
export const domain = Type.Object({
  domain: Type.String(),
  connectionId: Type.Union([Type.String(), Type.Null()]),
  verified: Type.Boolean(),
  verifiedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  verification: Type.Object({
    type: Type.Literal('dns-txt'),
    name: Type.String({ description: 'Publish a TXT record at this name...' }),
    value: Type.String({ description: '...with this value, then call verify.' }),
  }),
  createdAt: Type.String({ format: 'date-time' }),
});
export type Domain = Static<typeof domain>;
export const domainList = Type.Object({ items: Type.Array(domain) });

export const discoverBody = Type.Object({ email: Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' }) }, { additionalProperties: false });
export const discovery = Type.Object({
  tenantId: Type.Union([Type.String(), Type.Null()], { description: 'The tenant that verified the address’s domain; null: none did (log in with the tenant id you know).' }),
  connection: Type.Union([
    Type.Object({ id: Type.String(), protocol: Type.String(), name: Type.String(), start: Type.String({ description: 'OIDC/SAML: the URL to send the browser to; LDAP: the URL to POST the credentials to.' }) }),
    Type.Null(),
  ]),
});
