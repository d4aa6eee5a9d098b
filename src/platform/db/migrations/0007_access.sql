-- Access: custom roles, role assignments, support-access grants; API key scopes and last use.
-- Same isolation recipe as 0001: tenant-led keys, FORCE RLS, restrictive guard, tenant policy.

-- Custom roles of a tenant. Built-in roles (tenant-admin, member, viewer, auditor) live in code and take
-- no row; a custom role cannot take a built-in name (checked by the service).
CREATE TABLE roles (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  name         text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9-]{1,62}$'),
  description  text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
  permissions  text[]      NOT NULL CHECK (cardinality(permissions) BETWEEN 1 AND 100),
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, name)
);
ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON roles AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON roles
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON roles FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON roles TO {{app_role}};

-- A user's roles, by name (a built-in one or a custom role of the tenant).
CREATE TABLE user_roles (
  tenant_id   text        NOT NULL,
  user_id     text        NOT NULL,
  role_name   text        NOT NULL CHECK (role_name ~ '^[a-z][a-z0-9-]{1,62}$'),
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, user_id, role_name),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_roles_role ON user_roles (tenant_id, role_name);
ALTER TABLE user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON user_roles AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON user_roles
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON user_roles FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, DELETE ON user_roles TO {{app_role}};

-- A tenant admin lets platform operators act in the tenant: scoped, time-bound, revocable, counted.
CREATE TABLE support_grants (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  id           text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  -- One operator, or any operator when null.
  operator_id  text        CHECK (operator_id ~ '^[0-9a-f]{12}$'),
  permissions  text[]      NOT NULL CHECK (cardinality(permissions) BETWEEN 1 AND 100),
  reason       text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  -- Who granted it: `user:<id>` or `api-key:<id>`.
  granted_by   text        NOT NULL CHECK (char_length(granted_by) <= 100),
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL CHECK (expires_at > created_at),
  revoked_at   timestamptz,
  last_used_at timestamptz,
  use_count    bigint      NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE support_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE support_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON support_grants AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON support_grants
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON support_grants FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON support_grants TO {{app_role}};

-- API keys carry the permissions they may use (a subset of their creator's), and their last use
-- (written at most once a minute per key, so verification stays a cache lookup).
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
-- Keys made before scopes existed could do everything in their tenant; they keep exactly that. FORCE is
-- lifted for this statement only so the table owner sees every tenant's rows.
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY;
UPDATE api_keys SET scopes = ARRAY[
  'records:read', 'records:write', 'users:read', 'users:write', 'roles:read', 'roles:write', 'api-keys:read', 'api-keys:write',
  'policies:read', 'policies:write', 'keys:read', 'keys:rotate', 'keys:customer-key', 'crypto:encrypt', 'crypto:decrypt',
  'crypto:rewrap', 'support-grants:read', 'support-grants:write', 'audit:read'];
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE api_keys ALTER COLUMN scopes DROP DEFAULT;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes CHECK (cardinality(scopes) BETWEEN 1 AND 100);
