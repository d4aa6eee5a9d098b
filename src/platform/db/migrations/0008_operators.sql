-- Platform operators: their own realm, not any tenant's users. Accounts, login sessions with rotating
-- refresh tokens, brute-force throttles, and the platform keys that seal operator PII.
--
-- Platform tables (on the RLS allow-list): they hold no tenant data. Still, every one has FORCE RLS with a
-- policy that admits only the explicit platform scope (app.scope = 'platform'), so a statement run under a
-- tenant context (or none) sees and changes nothing here, whatever a bug or an injection makes it ask.
--
-- The session and throttle tables lead their keys with `realm` (always 'platform'), as the tenant tables
-- lead theirs with tenant_id: the sessions and login modules run one set of statements against both realms,
-- naming the realm column the way they name tenant_id.

-- Random 256-bit keys of the platform itself, one per name, wrapped by the root key (purpose platform-key,
-- the name bound into the wrap). `operators` seals operator PII and keys the e-mail lookup hash.
CREATE TABLE platform_keys (
  name         text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  wrapped_key  text        NOT NULL CHECK (char_length(wrapped_key) BETWEEN 1 AND 4096),
  created_at   timestamptz NOT NULL
);
ALTER TABLE platform_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_keys
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON platform_keys TO {{app_role}};

CREATE TABLE operators (
  id                   text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  -- HMAC-SHA256 of the normalised e-mail under the operators platform key: uniqueness and login lookup.
  email_hmac           bytea       NOT NULL UNIQUE CHECK (octet_length(email_hmac) = 32),
  -- Envelope (AES-256-GCM under the operators platform key) of {email, name, lastLoginAt}.
  pii                  bytea       NOT NULL,
  role                 text        NOT NULL CHECK (role IN ('platform-admin', 'platform-auditor')),
  status               text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  -- Argon2id PHC string; NULL until the operator sets one (an invited operator).
  password_hash        text        CHECK (char_length(password_hash) <= 512),
  password_changed_at  timestamptz,
  must_change_password boolean     NOT NULL DEFAULT false,
  created_at           timestamptz NOT NULL,
  updated_at           timestamptz NOT NULL
);
ALTER TABLE operators ENABLE ROW LEVEL SECURITY;
ALTER TABLE operators FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operators
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON operators TO {{app_role}};

-- Earlier password hashes of an operator, for the "last N not reusable" rule (as password_history, 0004).
CREATE TABLE operator_password_history (
  operator_id   text        NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
  password_hash text        NOT NULL CHECK (char_length(password_hash) <= 512),
  created_at    timestamptz NOT NULL,
  PRIMARY KEY (operator_id, password_hash)
);
ALTER TABLE operator_password_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_password_history FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operator_password_history
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, DELETE ON operator_password_history TO {{app_role}};

-- Same shape as login_throttles (0006), in the platform realm.
CREATE TABLE operator_login_throttles (
  realm             text        NOT NULL CHECK (realm = 'platform'),
  subject           text        NOT NULL CHECK (subject ~ '^(account|source):[0-9a-f]{64}$'),
  failures          integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
  window_started_at timestamptz NOT NULL,
  blocked_until     timestamptz,
  PRIMARY KEY (realm, subject)
);
ALTER TABLE operator_login_throttles ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_login_throttles FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operator_login_throttles
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE, DELETE ON operator_login_throttles TO {{app_role}};

-- Same shape as user_sessions and refresh_tokens (0006), in the platform realm.
CREATE TABLE operator_sessions (
  realm          text        NOT NULL CHECK (realm = 'platform'),
  id             text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  operator_id    text        NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
  created_at     timestamptz NOT NULL,
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  revoked_reason text        CHECK (revoked_reason IN ('logout', 'refresh_token_reuse', 'admin', 'user_deleted', 'password_changed')),
  PRIMARY KEY (realm, id)
);
CREATE INDEX operator_sessions_operator ON operator_sessions (realm, operator_id);
ALTER TABLE operator_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operator_sessions
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON operator_sessions TO {{app_role}};

CREATE TABLE operator_refresh_tokens (
  realm       text        NOT NULL CHECK (realm = 'platform'),
  token_hash  bytea       NOT NULL CHECK (length(token_hash) = 32),
  session_id  text        NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  PRIMARY KEY (realm, token_hash),
  FOREIGN KEY (realm, session_id) REFERENCES operator_sessions (realm, id) ON DELETE CASCADE
);
CREATE INDEX operator_refresh_tokens_session ON operator_refresh_tokens (realm, session_id);
ALTER TABLE operator_refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE operator_refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON operator_refresh_tokens
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON operator_refresh_tokens TO {{app_role}};

-- The bootstrap token is now the one-time setup token: POST /v1/setup spends it (the row is deleted) to
-- create the first operator. A token stored by an earlier version keeps working for that one call.
GRANT DELETE ON operator_bootstrap TO {{app_role}};
