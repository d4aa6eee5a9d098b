-- Keys: per-tenant data keys (256-bit, versioned), stored only wrapped by the root key provider.
-- Same isolation recipe as 0001: tenant-led keys, FORCE RLS, restrictive guard, tenant policy, platform read.

CREATE TABLE tenant_keyrings (
  tenant_id               text        PRIMARY KEY REFERENCES tenants (id),
  current_version         integer     NOT NULL CHECK (current_version > 0),
  -- Versions below this no longer decrypt (Vault's min_decryption_version).
  min_decryption_version  integer     NOT NULL DEFAULT 1 CHECK (min_decryption_version > 0),
  -- Rotate automatically once the current version is this old (days); null: only on request.
  rotation_period_days    integer     CHECK (rotation_period_days BETWEEN 1 AND 3650),
  -- Set when the keys were destroyed (crypto-shredding): nothing of this tenant decrypts any more.
  destroyed_at            timestamptz,
  updated_at              timestamptz NOT NULL DEFAULT now(),
  CHECK (min_decryption_version <= current_version)
);
ALTER TABLE tenant_keyrings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keyrings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON tenant_keyrings AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON tenant_keyrings
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON tenant_keyrings FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON tenant_keyrings TO {{app_role}};

CREATE TABLE tenant_keys (
  tenant_id    text        NOT NULL REFERENCES tenant_keyrings (tenant_id),
  version      integer     NOT NULL CHECK (version > 0),
  -- The data key wrapped by the root key provider (self-describing: provider and root key version).
  -- NULL once destroyed or trimmed: the key material is gone for good.
  wrapped_key  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz,
  PRIMARY KEY (tenant_id, version),
  CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON tenant_keys AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON tenant_keys
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON tenant_keys FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON tenant_keys TO {{app_role}};

-- Which data key version sealed a record's body; NULL for a body written before encryption at rest
-- (plain JSON), which the re-encryption job moves forward like any old version.
ALTER TABLE records ADD COLUMN key_version integer CHECK (key_version > 0);
CREATE INDEX records_key_version ON records (tenant_id, key_version);
