-- Login: brute-force throttles, user sessions and their rotating refresh tokens.
-- Same isolation recipe as 0001: tenant-led keys, FORCE RLS, restrictive guard, tenant policy.

-- One row per throttled subject: an account (the e-mail's keyed hash, so unknown addresses are throttled
-- exactly like real ones and a lockout reveals nothing) or a source address (its keyed hash: no IP in clear).
CREATE TABLE login_throttles (
  tenant_id        text        NOT NULL REFERENCES tenants (id),
  subject          text        NOT NULL CHECK (subject ~ '^(account|source):[0-9a-f]{64}$'),
  -- Password checks started in the current window, counted before the check runs: parallel guesses
  -- cannot overtake the limit (each one needs its own increment first).
  failures         integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
  window_started_at timestamptz NOT NULL,
  -- No password check before this time: the progressive delay, then the lockout.
  blocked_until    timestamptz,
  PRIMARY KEY (tenant_id, subject)
);
ALTER TABLE login_throttles ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_throttles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON login_throttles AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON login_throttles
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttles TO {{app_role}};

-- A login session: the family of its refresh tokens. Access tokens carry its id (`sid`); revoking it
-- (logout, refresh-token reuse, an admin) ends every token of the family on every instance within the
-- session cache window.
CREATE TABLE user_sessions (
  tenant_id      text        NOT NULL REFERENCES tenants (id),
  id             text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  user_id        text        NOT NULL,
  created_at     timestamptz NOT NULL,
  -- Absolute end of the session, whatever the refreshes.
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  revoked_reason text        CHECK (revoked_reason IN ('logout', 'refresh_token_reuse', 'admin', 'user_deleted', 'password_changed')),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_sessions_user ON user_sessions (tenant_id, user_id);
ALTER TABLE user_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON user_sessions AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON user_sessions
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON user_sessions FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON user_sessions TO {{app_role}};

-- Refresh tokens: opaque, stored as SHA-256 hashes, single use. `used_at` marks a rotated token; presenting
-- it again is reuse, which revokes the whole session.
CREATE TABLE refresh_tokens (
  tenant_id   text        NOT NULL,
  token_hash  bytea       NOT NULL CHECK (length(token_hash) = 32),
  session_id  text        NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  PRIMARY KEY (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, session_id) REFERENCES user_sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (tenant_id, session_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON refresh_tokens AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON refresh_tokens
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO {{app_role}};
