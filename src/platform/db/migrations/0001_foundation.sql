-- Foundation: tenants, tenant records, API keys, the operator bootstrap token.
--
-- Isolation recipe for every tenant table (DESIGN.md invariant 1):
--   * the primary key leads with tenant_id (Citus-ready; composite uniques and FKs include it);
--   * ENABLE + FORCE ROW LEVEL SECURITY, so even the owner is filtered;
--   * a RESTRICTIVE guard, so a later permissive policy can never widen access past the tenant;
--   * a permissive tenant policy on current_setting('app.tenant_id'), set per transaction only;
--   * a permissive read-only policy for the explicit platform scope (app.scope = 'platform').
-- With no context set, current_setting(..., true) is NULL or '' and every policy matches nothing.
-- {{app_role}} is replaced by the quoted app role name (BULWARK_DATABASE_APP_ROLE).

CREATE TABLE tenants (
  id          text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  region      text        NOT NULL CHECK (region ~ '^[a-z][a-z0-9-]{0,31}$'),
  status      text        NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'suspended', 'offboarding', 'deleted')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON tenants AS RESTRICTIVE
  USING (id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
CREATE POLICY tenant_self_read ON tenants FOR SELECT
  USING (id = current_setting('app.tenant_id', true));
-- Creating and changing tenants is a platform (operator) action.
CREATE POLICY platform_manage ON tenants
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON tenants TO {{app_role}};

CREATE TABLE records (
  tenant_id   text        NOT NULL REFERENCES tenants (id),
  collection  text        NOT NULL CHECK (collection ~ '^[a-z][a-z0-9_-]{0,62}$'),
  id          text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  version     integer     NOT NULL CHECK (version > 0),
  -- The record's JSON. Held as bytes so that the keys module stores the envelope ciphertext here.
  body        bytea       NOT NULL,
  body_bytes  integer     NOT NULL CHECK (body_bytes >= 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, collection, id)
);
ALTER TABLE records ENABLE ROW LEVEL SECURITY;
ALTER TABLE records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON records AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON records
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON records FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON records TO {{app_role}};

CREATE TABLE api_keys (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  id           text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  -- SHA-256 of the key's 256-bit random secret; the secret itself is shown once and never stored.
  secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  PRIMARY KEY (tenant_id, id)
);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON api_keys AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON api_keys
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON api_keys FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON api_keys TO {{app_role}};

-- Platform table (on the RLS allow-list): the hash of the operator bootstrap token, one row.
CREATE TABLE operator_bootstrap (
  singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
  token_hash  bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
  created_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON operator_bootstrap TO {{app_role}};
