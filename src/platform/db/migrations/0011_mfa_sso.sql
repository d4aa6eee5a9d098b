-- MFA (TOTP, WebAuthn, recovery codes, login challenges, the tenant's MFA and SSO policy) and SSO
-- (connections, linked identities, login flows, SAML assertion replay, verified e-mail domains).
-- Same isolation recipe as 0001: tenant-led keys, FORCE RLS, restrictive guard, tenant policy.

-- The second factor has a throttle subject of its own per account (`mfa:<account id>`), which a correct
-- password does not clear: the subject checks of 0006 and 0008 admit it.
ALTER TABLE login_throttles DROP CONSTRAINT login_throttles_subject_check,
  ADD CONSTRAINT login_throttles_subject_check CHECK (subject ~ '^((account|source):[0-9a-f]{64}|mfa:[0-9a-f]{12})$');
ALTER TABLE operator_login_throttles DROP CONSTRAINT operator_login_throttles_subject_check,
  ADD CONSTRAINT operator_login_throttles_subject_check CHECK (subject ~ '^((account|source):[0-9a-f]{64}|mfa:[0-9a-f]{12})$');

-- One row per tenant; no row: MFA optional, SSO not required.
CREATE TABLE login_policies (
  tenant_id       text        PRIMARY KEY REFERENCES tenants (id),
  mfa_mode        text        NOT NULL DEFAULT 'optional' CHECK (mfa_mode IN ('off', 'optional', 'required', 'required_for_admins')),
  sso_required    boolean     NOT NULL DEFAULT false,
  -- Users who keep password login when SSO is required: the way back in when the identity provider fails.
  sso_break_glass jsonb       NOT NULL DEFAULT '[]',
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- A user's second factors. TOTP: the seed sealed with the tenant key (`secret`), and the last accepted time
-- step, so a code is accepted once. WebAuthn: the credential's public key (not secret) and its counter.
CREATE TABLE mfa_factors (
  tenant_id      text        NOT NULL,
  id             text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  user_id        text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('totp', 'webauthn')),
  name           text        NOT NULL,
  -- pending: enrolment started, not yet proven with a code or a ceremony.
  status         text        NOT NULL CHECK (status IN ('pending', 'active')),
  secret         bytea,
  key_version    integer     CHECK (key_version > 0),
  last_used_step bigint,
  credential_id  text,
  public_key     bytea,
  sign_count     bigint,
  transports     jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  last_used_at   timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, credential_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
  CHECK ((kind = 'totp') = (secret IS NOT NULL AND key_version IS NOT NULL)),
  CHECK ((kind = 'webauthn') = (credential_id IS NOT NULL AND public_key IS NOT NULL))
);
CREATE INDEX mfa_factors_user ON mfa_factors (tenant_id, user_id);
CREATE INDEX mfa_factors_key_version ON mfa_factors (tenant_id, key_version);

-- One-time recovery codes: keyed hashes only (HMAC under the tenant's lookup key), spent once.
CREATE TABLE mfa_recovery_codes (
  tenant_id  text        NOT NULL,
  user_id    text        NOT NULL,
  code_hmac  bytea       NOT NULL,
  used_at    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id, code_hmac),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- A login that passed the password and waits for the second factor (purpose verify), or for a first factor
-- the policy requires (purpose enroll). The client holds the token; only its SHA-256 is stored.
CREATE TABLE mfa_challenges (
  tenant_id          text        NOT NULL,
  id                 text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  user_id            text        NOT NULL,
  token_hash         bytea       NOT NULL,
  purpose            text        NOT NULL CHECK (purpose IN ('verify', 'enroll')),
  -- The WebAuthn challenge of the ceremony in progress (single use: cleared when checked).
  webauthn_challenge text,
  attempts           integer     NOT NULL DEFAULT 0,
  expires_at         timestamptz NOT NULL,
  consumed_at        timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (tenant_id, expires_at);

-- Per tenant: OIDC, SAML 2.0 and LDAP connections. `config` holds no secret; the client secret or the LDAP
-- service password is sealed in `secret` with the tenant key and never returned.
CREATE TABLE sso_connections (
  tenant_id       text        NOT NULL REFERENCES tenants (id),
  id              text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  protocol        text        NOT NULL CHECK (protocol IN ('oidc', 'saml', 'ldap')),
  name            text        NOT NULL,
  enabled         boolean     NOT NULL DEFAULT true,
  config          jsonb       NOT NULL,
  secret          bytea,
  key_version     integer     CHECK (key_version > 0),
  -- [{ "group": "...", "role": "..." }]: IdP groups to tenant roles, applied at every login.
  role_mappings   jsonb       NOT NULL DEFAULT '[]',
  jit_provisioning boolean    NOT NULL DEFAULT true,
  link_by_email   boolean     NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  CHECK ((secret IS NULL) = (key_version IS NULL))
);
CREATE INDEX sso_connections_key_version ON sso_connections (tenant_id, key_version);

-- The provider's subject linked to a user: keyed hash of the subject, so the directory's ids are not stored.
CREATE TABLE sso_identities (
  tenant_id     text        NOT NULL,
  connection_id text        NOT NULL,
  subject_hmac  bytea       NOT NULL,
  user_id       text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_login_at timestamptz,
  PRIMARY KEY (tenant_id, connection_id, subject_hmac),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sso_identities_user ON sso_identities (tenant_id, user_id);

-- A redirect login in progress (OIDC state, nonce and PKCE verifier; SAML request id), single use, minutes long.
CREATE TABLE sso_flows (
  tenant_id     text        NOT NULL,
  id            text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  connection_id text        NOT NULL,
  state_hash    bytea       NOT NULL,
  -- The flow's secrets (nonce, PKCE verifier, request id), sealed with the tenant key.
  sealed        bytea       NOT NULL,
  key_version   integer     NOT NULL CHECK (key_version > 0),
  expires_at    timestamptz NOT NULL,
  consumed_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, state_hash),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sso_flows_expiry ON sso_flows (tenant_id, expires_at);
CREATE INDEX sso_flows_key_version ON sso_flows (tenant_id, key_version);

-- SAML assertion ids seen, until they expire: an assertion is accepted once.
CREATE TABLE sso_assertions (
  tenant_id      text        NOT NULL,
  connection_id  text        NOT NULL,
  assertion_hash bytea       NOT NULL,
  expires_at     timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, connection_id, assertion_hash),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sso_assertions_expiry ON sso_assertions (tenant_id, expires_at);

-- E-mail domains a tenant claims, for home-realm discovery. A domain counts once its DNS TXT record proves
-- control; a verified domain belongs to one tenant only (the partial unique index spans tenants).
CREATE TABLE tenant_domains (
  tenant_id          text        NOT NULL REFERENCES tenants (id),
  domain             text        NOT NULL CHECK (domain = lower(domain)),
  verification_token text        NOT NULL,
  -- The connection that users of this domain are sent to; NULL: the tenant's password login.
  connection_id      text,
  verified_at        timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, domain),
  FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE SET NULL (connection_id)
);
CREATE UNIQUE INDEX tenant_domains_verified ON tenant_domains (domain) WHERE verified_at IS NOT NULL;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['login_policies', 'mfa_factors', 'mfa_recovery_codes', 'mfa_challenges', 'sso_connections', 'sso_identities', 'sso_flows', 'sso_assertions', 'tenant_domains'] LOOP
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

-- Home-realm discovery looks a verified domain up before it knows the tenant: the platform scope reads
-- verified domains (and nothing else of another tenant).
CREATE POLICY platform_read ON tenant_domains FOR SELECT
  USING (current_setting('app.scope', true) = 'platform' AND verified_at IS NOT NULL);
CREATE POLICY platform_read ON sso_connections FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
CREATE POLICY platform_read ON login_policies FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');

GRANT SELECT, INSERT, UPDATE ON login_policies TO {{app_role}};
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_factors, mfa_recovery_codes, mfa_challenges, sso_connections, sso_identities, sso_flows, sso_assertions, tenant_domains TO {{app_role}};
