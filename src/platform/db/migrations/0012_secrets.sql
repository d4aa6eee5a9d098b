-- Write-only secrets (DESIGN.md invariant 7): services that read them, registered by an operator with an
-- X25519 public key, and per tenant the secrets' versions with one sealed copy per reader service.

-- Services are platform principals (no tenant): FORCE RLS with the platform-only policy of 0008, so a
-- statement under a tenant context (or none) sees and changes nothing here.
CREATE TABLE services (
  id              text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  name            text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  -- The raw X25519 public key the server seals to (RFC 7748); the private key never reaches Bulwark.
  public_key      bytea       NOT NULL CHECK (octet_length(public_key) = 32),
  -- SHA-256 of the secret part of the service credential (`bwsv_<id><secret>`), as API keys store theirs.
  credential_hash bytea       NOT NULL CHECK (octet_length(credential_hash) = 32),
  created_at      timestamptz NOT NULL,
  -- Retired: the credential is refused and no secret names it as a reader again. The row stays for the audit trail.
  retired_at      timestamptz
);
-- A name and a key belong to one active service: re-registering `replicator` with a new key retires the old one first.
CREATE UNIQUE INDEX services_active_name ON services (name) WHERE retired_at IS NULL;
CREATE UNIQUE INDEX services_active_public_key ON services (public_key) WHERE retired_at IS NULL;
ALTER TABLE services ENABLE ROW LEVEL SECURITY;
ALTER TABLE services FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON services
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON services TO {{app_role}};

-- A tenant's secret: its name and current version. No value: the server never keeps one.
CREATE TABLE secrets (
  tenant_id       text        NOT NULL REFERENCES tenants (id),
  name            text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
  current_version integer     NOT NULL CHECK (current_version > 0),
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, name)
);

CREATE TABLE secret_versions (
  tenant_id  text        NOT NULL,
  name       text        NOT NULL,
  version    integer     NOT NULL CHECK (version > 0),
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, name, version),
  FOREIGN KEY (tenant_id, name) REFERENCES secrets (tenant_id, name) ON DELETE CASCADE
);

-- One copy per reader: the HPKE (RFC 9180) encapsulated key and ciphertext sealed to the service's public
-- key, bound to tenant, name, version and service; then sealed again with the tenant's data key (AAD: this
-- row), so destroying the tenant's keys makes every copy unreadable, backups included. No foreign key to
-- services: tenant tables reference nothing across tenants (rls-coverage.test.ts); readers are checked on write.
CREATE TABLE secret_copies (
  tenant_id   text        NOT NULL,
  name        text        NOT NULL,
  version     integer     NOT NULL,
  service_id  text        NOT NULL CHECK (service_id ~ '^[0-9a-f]{12}$'),
  sealed      bytea       NOT NULL,
  key_version integer     NOT NULL CHECK (key_version > 0),
  PRIMARY KEY (tenant_id, name, version, service_id),
  FOREIGN KEY (tenant_id, name, version) REFERENCES secret_versions (tenant_id, name, version) ON DELETE CASCADE
);
CREATE INDEX secret_copies_key_version ON secret_copies (tenant_id, key_version);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['secrets', 'secret_versions', 'secret_copies'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_guard ON %I AS RESTRICTIVE
      USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
      WITH CHECK (tenant_id = current_setting('app.tenant_id', true))$p$, t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
      USING (tenant_id = current_setting('app.tenant_id', true))
      WITH CHECK (tenant_id = current_setting('app.tenant_id', true))$p$, t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON secrets, secret_versions, secret_copies TO {{app_role}};
