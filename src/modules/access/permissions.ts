/**
 * The permission catalogue and the built-in roles. A permission is `resource:action`; every tenant route
 * declares exactly one (its `config.permission`), every operator route one `platform:` permission, and the
 * app refuses to start when a route declares none or an unknown one (`assertRouteAccess`).
 */
export const tenantPermissions = {
  'records:read': 'Read records.',
  'records:write': 'Create, replace and delete records.',
  'users:read': 'List and read users, their roles and the legacy-hash report.',
  'users:write': 'Create, import, update, disable and delete users; set passwords; lift lockouts.',
  'roles:read': 'List roles and their permissions.',
  'roles:write': 'Create, change and delete custom roles; assign roles to users.',
  'api-keys:read': 'List API keys (never their secrets).',
  'api-keys:write': 'Create and revoke API keys.',
  'policies:read': 'Read the password, MFA and SSO login policies.',
  'policies:write': 'Change the password, MFA and SSO login policies.',
  'sso:read': 'List SSO connections (never their secrets), group mappings and e-mail domains.',
  'sso:write': 'Create, change and delete SSO connections and group mappings; claim and verify e-mail domains.',
  'mfa:reset': "Remove a user's second factors and recovery codes (a lost device).",
  'keys:read': 'Read the key ring status.',
  'keys:rotate': 'Rotate data keys, re-encrypt, trim old versions, change the rotation policy.',
  'keys:customer-key': 'Read, set and remove the customer-managed key (BYOK).',
  'crypto:encrypt': 'Encrypt with the transit API.',
  'crypto:decrypt': 'Decrypt with the transit API.',
  'crypto:rewrap': 'Re-wrap ciphertext to the newest key version (never sees the plaintext).',
  'support-grants:read': 'List support-access grants.',
  'support-grants:write': 'Grant and revoke support access for platform operators.',
  'audit:read': 'Read, export, summarise and verify the audit trail.',
  'audit:write': "Set the audit trail's retention.",
  'limits:read': "Read the tenant's rate limits, quotas and usage.",
  'secrets:read': 'List secrets and read their metadata (versions, readers, dates); never a value.',
  'secrets:write': 'Write (create, rotate) and delete secrets, naming the services that may read them.',
  'agents:read': 'List and read paired agents: status, last seen, health and latest stats.',
  'agents:write': 'Create pairing codes and revoke agents.',
  'legal-holds:read': 'List and read legal holds.',
  'legal-holds:write': 'Place and release legal holds (a release runs the erasures the hold deferred).',
  'privacy:read': 'List erasure requests (ids, status, counts; no personal data).',
  'privacy:export': "Export everything Bulwark holds about a user (the data subject's copy, decrypted).",
  'privacy:erase': "Erase a user's personal data (deferred while a legal hold covers it).",
  'data:export': "Export all of the tenant's data as one archive: records decrypted, users, roles, the audit trail.",
} as const;

export const platformPermissions = {
  'platform:tenants:read': 'List and read tenants.',
  'platform:tenants:write': 'Create, rename, suspend and reactivate tenants.',
  'platform:tenants:offboard': "Request, cancel and confirm a tenant's offboarding (confirming destroys its keys, rows and backups).",
  'platform:root-key:read': 'Read the root key status.',
  'platform:root-key:rotate': 'Rotate the root key.',
  'platform:operators:read': 'List and read operator accounts.',
  'platform:operators:write': 'Create, change, disable and delete operator accounts; set their passwords; lift lockouts.',
  'platform:audit:read': 'Read, export, summarise and verify the platform audit trail.',
  'platform:audit:write': "Set the platform audit trail's retention.",
  'platform:limits:write': "Set a tenant's rate limits, quotas and concurrency cap.",
  'platform:services:read': 'List and read the services that read secrets.',
  'platform:services:write': 'Register and retire services (their public keys and credentials).',
  'platform:privacy:read': 'Read the inventory of personal data (which columns hold it, why, for how long, how protected).',
  'platform:backups:read': 'List and read backups; verify them (decrypts every segment, reads nothing out).',
  'platform:backups:write': 'Take backups on demand.',
  'platform:backups:restore': 'Restore a backup into a fresh database.',
} as const;

export type TenantPermission = keyof typeof tenantPermissions;
export type PlatformPermission = keyof typeof platformPermissions;
export type Permission = TenantPermission | PlatformPermission;

export const allTenantPermissions = Object.freeze(Object.keys(tenantPermissions) as TenantPermission[]);

export function isTenantPermission(value: string): value is TenantPermission {
  return Object.hasOwn(tenantPermissions, value);
}

export function isPlatformPermission(value: string): value is PlatformPermission {
  return Object.hasOwn(platformPermissions, value);
}

const readOnly = allTenantPermissions.filter((permission) => permission.endsWith(':read'));

export const builtInRoles = {
  'tenant-admin': { description: 'Everything in the tenant.', permissions: allTenantPermissions },
  member: {
    description: 'Works with the tenant data: records and the transit API; sees the user directory.',
    permissions: ['records:read', 'records:write', 'crypto:encrypt', 'crypto:decrypt', 'crypto:rewrap', 'users:read'] satisfies TenantPermission[],
  },
  viewer: { description: 'Reads records and the user directory; changes nothing.', permissions: ['records:read', 'users:read'] satisfies TenantPermission[] },
  auditor: {
    description: 'Reads every setting and the audit trail; no tenant data, no changes.',
    permissions: readOnly.filter((permission) => permission !== 'records:read'),
  },
} as const satisfies Record<string, { description: string; permissions: readonly TenantPermission[] }>;

export type BuiltInRole = keyof typeof builtInRoles;

export function isBuiltInRole(name: string): name is BuiltInRole {
  return Object.hasOwn(builtInRoles, name);
}

/**
 * The roles of platform operators (one per operator). An operator's platform permissions come from it, and
 * so do its standing tenant permissions: what it may do on a tenant without a support-access grant. Key
 * hygiene is the platform's duty and exposes no tenant data; everything else needs a grant from a tenant admin.
 */
export const platformRoles = {
  'platform-admin': {
    description: "Runs the platform: tenants, operators, the root key, tenants' limits; rotates tenant keys.",
    permissions: Object.keys(platformPermissions) as PlatformPermission[],
    standingTenantPermissions: ['keys:read', 'keys:rotate', 'limits:read'] satisfies TenantPermission[],
  },
  'platform-auditor': {
    description: "Reads tenants, operators, services, the key status, tenants' limits, the platform audit trail, the backups (and verifies them) and the personal-data inventory; changes nothing.",
    permissions: ['platform:tenants:read', 'platform:root-key:read', 'platform:operators:read', 'platform:audit:read', 'platform:services:read', 'platform:backups:read', 'platform:privacy:read'] satisfies PlatformPermission[],
    standingTenantPermissions: ['keys:read', 'limits:read'] satisfies TenantPermission[],
  },
} as const satisfies Record<string, { description: string; permissions: readonly PlatformPermission[]; standingTenantPermissions: readonly TenantPermission[] }>;

export type PlatformRole = keyof typeof platformRoles;

export function isPlatformRole(name: string): name is PlatformRole {
  return Object.hasOwn(platformRoles, name);
}

/** What a platform role may do: its platform permissions, and its standing permissions on every tenant. */
export function platformRoleGrants(role: string): { platform: ReadonlySet<string>; standing: ReadonlySet<TenantPermission> } {
  if (!isPlatformRole(role)) return { platform: new Set(), standing: new Set() };
  const { permissions, standingTenantPermissions } = platformRoles[role];
  return { platform: new Set(permissions), standing: new Set(standingTenantPermissions) };
}

/**
 * Never in a support grant: each would let the operator mint access that outlives the grant (a key, a
 * role, another grant, an identity provider of its own that logs in as any user) or take over the customer's key,
 * or swap a secret its services rely on for one the operator knows (a replicator's target credentials),
 * or pair an agent of its own into the tenant. Legal holds and erasure are the customer's own legal acts: an
 * operator who could release (or place) a hold or erase a person would decide what evidence survives.
 */
export const ungrantablePermissions: ReadonlySet<TenantPermission> = new Set([
  'api-keys:write',
  'roles:write',
  'support-grants:write',
  'keys:customer-key',
  'sso:write',
  'secrets:write',
  'agents:write',
  'legal-holds:write',
  'privacy:erase',
]);

/**
 * What makes a user an administrator for the MFA policy `required_for_admins`: any permission that changes
 * who may do what, or the keys.
 */
export const administrativePermissions: ReadonlySet<TenantPermission> = new Set([
  'users:write',
  'roles:write',
  'api-keys:write',
  'policies:write',
  'sso:write',
  'mfa:reset',
  'keys:rotate',
  'keys:customer-key',
  'support-grants:write',
  'audit:write',
  'secrets:write',
  'legal-holds:write',
  'privacy:erase',
]);

/**
 * The start-up check: a tenant route names one tenant permission, an operator route one platform
 * permission, public and self routes none. A route that breaks this stops the app from starting,
 * so no route can be added without deciding who may call it.
 */
export function assertRouteAccess(route: string, config: { auth?: string | undefined; permission?: string | undefined }): void {
  const { auth, permission } = config;
  const fail = (why: string) => {
    throw new Error(`route ${route}: ${why}`);
  };
  switch (auth) {
    case 'tenant':
      if (permission === undefined || !isTenantPermission(permission)) fail(`a tenant route needs a tenant permission (got ${String(permission)})`);
      return;
    case 'operator':
      if (permission === undefined || !isPlatformPermission(permission)) fail(`an operator route needs a platform permission (got ${String(permission)})`);
      return;
    case 'public':
    case 'self':
      if (permission !== undefined) fail(`a ${auth} route takes no permission`);
      return;
    default:
      fail('no auth level declared (public, self, tenant or operator)');
  }
}
