-- Identity: a tenant's users, its password policy and password history.
-- Same isolation recipe as 0001: tenant-led keys, FORCE RLS, restrictive guard, tenant policy, platform read.

-- The key behind the keyed hash (HMAC-SHA256) of lookup values such as e-mail addresses, wrapped by the
-- root key (purpose lookup-key). Stable across data key rotations, so lookups keep working; destroyed with
-- the data keys when the tenant is shredded.
ALTER TABLE tenant_keyrings ADD COLUMN lookup_wrapped_key text;

CREATE TABLE users (
  tenant_id             text        NOT NULL REFERENCES tenants (id),
  id                    text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  -- HMAC of the normalised e-mail under the tenant's lookup key: unique per tenant, searchable, not reversible.
  email_hmac            bytea       NOT NULL,
  -- The PII (e-mail, first and last name, last login) as one envelope under the tenant's data key.
  pii                   bytea       NOT NULL,
  key_version           integer     NOT NULL CHECK (key_version > 0),
  status                text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  -- Argon2id PHC string, or an imported legacy hash until the user's next login replaces it; NULL: none set.
  password_hash         text,
  password_changed_at   timestamptz,
  must_change_password  boolean     NOT NULL DEFAULT false,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, email_hmac)
);
CREATE INDEX users_key_version ON users (tenant_id, key_version);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON users AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON users
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON users FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {{app_role}};

-- Earlier password hashes of a user, newest first by created_at, for the "last N not reusable" rule.
CREATE TABLE password_history (
  tenant_id     text        NOT NULL,
  user_id       text        NOT NULL,
  password_hash text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  -- Every hash carries its own random salt, so it identifies the entry.
  PRIMARY KEY (tenant_id, user_id, password_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX password_history_user ON password_history (tenant_id, user_id, created_at DESC);
ALTER TABLE password_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON password_history AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON password_history
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, DELETE ON password_history TO {{app_role}};

-- One password policy per tenant (JSON validated by the service); no row: the defaults.
CREATE TABLE password_policies (
  tenant_id  text        PRIMARY KEY REFERENCES tenants (id),
  policy     jsonb       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE password_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE password_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON password_policies AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON password_policies
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON password_policies FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON password_policies TO {{app_role}};
