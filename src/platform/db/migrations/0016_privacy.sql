-- Privacy (issue #9): legal holds, erasure requests, and the annotations the personal-data inventory is
-- generated from (GET /v1/privacy/inventory reads them from the catalog, so it cannot drift from the schema).
--
-- Annotation format: COMMENT ON COLUMN t.c IS 'pii:' || JSON with
--   data        what personal data the column holds (categories, never values);
--   purpose     why Bulwark keeps it;
--   basis       the legal basis (GDPR Art. 6) as Bulwark sees it; tenants are the controllers of their users' data;
--   retention   how long it stays, and what removes it;
--   protection  how it is stored (sealed, keyed hash, pseudonym, plain).
-- src/modules/privacy/inventory.test.ts fails when a column that looks personal (by name) is neither annotated
-- nor on its commented allow-list. Tenant tables follow the 0001 recipe.

-- --- legal holds ---

-- A hold on the whole tenant (user_id NULL) or on one user. Released holds stay, with who released them and
-- when: the record of what was preserved is evidence too. No foreign key to users: the hold outlives the user
-- it names once it is released and the user erased (the id is then a pseudonym that names nobody).
CREATE TABLE legal_holds (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  id           text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  reason       text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 1000),
  user_id      text        CHECK (user_id ~ '^[0-9a-f]{12}$'),
  -- Who placed and released it: `user:<id>`, `api-key:<id>` (support access cannot: legal-holds:write is ungrantable).
  created_by   text        NOT NULL CHECK (char_length(created_by) <= 100),
  created_at   timestamptz NOT NULL,
  released_by  text        CHECK (char_length(released_by) <= 100),
  released_at  timestamptz,
  PRIMARY KEY (tenant_id, id),
  CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE INDEX legal_holds_active ON legal_holds (tenant_id, user_id) WHERE released_at IS NULL;

-- --- erasure requests ---

-- Every erasure asked for: done at once (`completed`), or kept while a legal hold covers the user (`pending`;
-- the user is disabled meanwhile) and run when the last such hold is released. The register of erasures an
-- accountable controller keeps; it names the user by id only (a pseudonym once the user is gone).
CREATE TABLE erasure_requests (
  tenant_id     text        NOT NULL REFERENCES tenants (id),
  id            text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  user_id       text        NOT NULL CHECK (user_id ~ '^[0-9a-f]{12}$'),
  status        text        NOT NULL CHECK (status IN ('pending', 'completed')),
  -- Why, as the requester wrote it (the route says: why, not who; the row outlives the person).
  reason        text        CHECK (char_length(reason) BETWEEN 1 AND 500),
  requested_by  text        NOT NULL CHECK (char_length(requested_by) <= 100),
  requested_at  timestamptz NOT NULL,
  -- The holds that deferred it, when it was deferred.
  held_by       text[]      NOT NULL DEFAULT '{}',
  completed_at  timestamptz,
  -- What the erasure removed, as counts per kind (never values).
  removed       jsonb,
  PRIMARY KEY (tenant_id, id),
  CHECK ((status = 'completed') = (completed_at IS NOT NULL AND removed IS NOT NULL))
);
-- One pending request per user: asking again answers the same request.
CREATE UNIQUE INDEX erasure_requests_pending ON erasure_requests (tenant_id, user_id) WHERE status = 'pending';

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['legal_holds', 'erasure_requests'] LOOP
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
-- Platform-wide checks (offboarding, backup pruning) must see a tenant's holds before they destroy anything.
CREATE POLICY platform_read ON legal_holds FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');

-- No DELETE: a hold is released, a request completed, never removed (offboarding's purge, 0015, runs as the
-- owner and removes every row of the tenant).
GRANT SELECT, INSERT, UPDATE ON legal_holds, erasure_requests TO {{app_role}};

-- --- annotations: tenants' users ---

COMMENT ON COLUMN users.pii IS 'pii:{"data":["e-mail address","first name","last name","last login time"],"purpose":"identify the user, show them to their tenant''s admins, log them in","basis":"the tenant''s contract with its user (Bulwark processes for the tenant, GDPR Art. 28)","retention":"until the user is erased or deleted, or the tenant is offboarded","protection":"sealed with the tenant data key (AES-256-GCM, bound to tenant, table, column and user id)"}';
COMMENT ON COLUMN users.email_hmac IS 'pii:{"data":["keyed hash of the e-mail address"],"purpose":"find the user at login; one account per address","basis":"the tenant''s contract with its user","retention":"with the user","protection":"HMAC-SHA256 under the tenant lookup key; not reversible without it, destroyed with the tenant keys"}';
COMMENT ON COLUMN users.password_hash IS 'pii:{"data":["password hash (a credential)"],"purpose":"password login","basis":"the tenant''s contract with its user","retention":"with the user; replaced at each change","protection":"Argon2id (an imported legacy hash until the next login)"}';
COMMENT ON COLUMN password_history.user_id IS 'pii:{"data":["the user''s earlier password hashes"],"purpose":"the password policy: recent passwords are not reused","basis":"the tenant''s security policy","retention":"the newest N per the policy; deleted with the user","protection":"Argon2id hashes"}';
COMMENT ON COLUMN password_history.password_hash IS 'pii:{"data":["earlier password hash (a credential)"],"purpose":"the password policy: recent passwords are not reused","basis":"the tenant''s security policy","retention":"the newest N per the policy; deleted with the user","protection":"Argon2id"}';
COMMENT ON COLUMN login_throttles.subject IS 'pii:{"data":["keyed hash of an e-mail address tried, or of a client address, or a user id (second factor)"],"purpose":"brute-force protection","basis":"legitimate interest: security of the service (Art. 6(1)(f))","retention":"until the window or lockout ends and the next login settles it; the user''s own rows are deleted at erasure","protection":"HMAC-SHA256 under the tenant lookup key; user ids are random pseudonyms"}';
COMMENT ON COLUMN user_sessions.user_id IS 'pii:{"data":["the user''s login sessions: when they started, end, and were revoked"],"purpose":"sessions and refresh-token rotation","basis":"the tenant''s contract with its user","retention":"until the user is erased or deleted (revoked sessions stay until then)","protection":"plain metadata; refresh tokens only as SHA-256"}';
COMMENT ON COLUMN user_roles.user_id IS 'pii:{"data":["the user''s roles"],"purpose":"access control","basis":"the tenant''s contract with its user","retention":"with the user","protection":"plain; the user id is a random pseudonym"}';
COMMENT ON COLUMN support_grants.reason IS 'pii:{"data":["free text of the tenant admin (a ticket reference; may name people)"],"purpose":"why an operator may act in the tenant","basis":"legitimate interest: accountable support access","retention":"for the tenant''s life (grants are revoked, not deleted)","protection":"plain, bounded to 500 characters"}';
COMMENT ON COLUMN support_grants.granted_by IS 'pii:{"data":["who granted it (user or API key id)"],"purpose":"accountability","basis":"legitimate interest: accountable support access","retention":"for the tenant''s life","protection":"a random id (a pseudonym once the user is erased)"}';
COMMENT ON COLUMN support_grants.operator_id IS 'pii:{"data":["the operator the grant names"],"purpose":"whom the grant lets in","basis":"legitimate interest: accountable support access","retention":"for the tenant''s life","protection":"a random id"}';
COMMENT ON COLUMN login_policies.sso_break_glass IS 'pii:{"data":["ids of the users who keep password login when SSO is required"],"purpose":"a way back in when the identity provider fails","basis":"the tenant''s security policy","retention":"until the tenant changes its policy","protection":"random ids"}';

-- --- second factors and SSO ---

COMMENT ON COLUMN mfa_factors.user_id IS 'pii:{"data":["the user''s second factors: kind, status, dates; a TOTP seed (sealed) or a WebAuthn public key and credential id"],"purpose":"second-factor login","basis":"the tenant''s contract with its user","retention":"until removed, reset, or the user is erased or deleted","protection":"TOTP seeds sealed with the tenant data key; public keys are not secret"}';
COMMENT ON COLUMN mfa_factors.name IS 'pii:{"data":["a name the user gave the factor (e.g. a device name)"],"purpose":"tell the user''s factors apart","basis":"the tenant''s contract with its user","retention":"with the factor","protection":"plain"}';
COMMENT ON COLUMN mfa_factors.credential_id IS 'pii:{"data":["WebAuthn credential id (identifies the authenticator to this service)"],"purpose":"find the credential at login","basis":"the tenant''s contract with its user","retention":"with the factor","protection":"plain (public by design)"}';
COMMENT ON COLUMN mfa_recovery_codes.user_id IS 'pii:{"data":["the user''s recovery codes"],"purpose":"a way in when the second factor is lost","basis":"the tenant''s contract with its user","retention":"until spent or regenerated, or the user is erased or deleted","protection":"HMAC-SHA256 under the tenant lookup key"}';
COMMENT ON COLUMN mfa_challenges.user_id IS 'pii:{"data":["a login waiting for its second factor"],"purpose":"the second step of a login","basis":"the tenant''s contract with its user","retention":"minutes (expired challenges go with later ones); deleted with the user","protection":"the challenge token only as SHA-256"}';
COMMENT ON COLUMN sso_identities.user_id IS 'pii:{"data":["which identity provider account is linked to the user; link and last login dates"],"purpose":"single sign-on","basis":"the tenant''s contract with its user","retention":"until the connection or the user is deleted or erased","protection":"plain metadata"}';
COMMENT ON COLUMN sso_identities.subject_hmac IS 'pii:{"data":["keyed hash of the identity provider''s subject id"],"purpose":"find the user at an SSO login without storing the directory''s ids","basis":"the tenant''s contract with its user","retention":"with the link","protection":"HMAC-SHA256 under the tenant lookup key"}';

-- --- the audit trail ---

COMMENT ON COLUMN audit_events.pii IS 'pii:{"data":["client address","user agent","an e-mail address (login attempts)"],"purpose":"accountability and security investigation","basis":"legitimate interest: security and accountability (Art. 6(1)(f)); the tenant''s legal obligations","retention":"the tenant''s audit retention; unreadable at once when its subject is erased","protection":"sealed under a key of its subject (the person acting, or the account a failed login named), itself sealed with the tenant data key"}';
COMMENT ON COLUMN audit_events.subject IS 'pii:{"data":["whose key seals the event''s personal data (user, operator or API key id)"],"purpose":"erasure by subject","basis":"legitimate interest: security and accountability","retention":"the tenant''s audit retention","protection":"a random id (a pseudonym once the user is erased)"}';
COMMENT ON COLUMN audit_events.actor_id IS 'pii:{"data":["who acted (user, operator, API key, agent or service id)"],"purpose":"accountability","basis":"legitimate interest: security and accountability","retention":"the tenant''s audit retention; kept after erasure (covered by the hash chain)","protection":"a random id: a pseudonym once the user is erased"}';
COMMENT ON COLUMN audit_events.target_id IS 'pii:{"data":["what was acted on (may be a user id)"],"purpose":"accountability","basis":"legitimate interest: security and accountability","retention":"the tenant''s audit retention; kept after erasure (covered by the hash chain)","protection":"a random id: a pseudonym once the user is erased"}';
COMMENT ON COLUMN audit_subject_keys.subject IS 'pii:{"data":["a person''s (or key''s) audit subject and their key"],"purpose":"seal and erase the personal data of their events","basis":"legitimate interest: security and accountability","retention":"the key is destroyed at erasure; the row stays to mark it","protection":"the key sealed with the tenant data key"}';

-- --- platform operators (the platform's operator is the controller of this data) ---

COMMENT ON COLUMN operators.pii IS 'pii:{"data":["e-mail address","name","last login time"],"purpose":"operator accounts","basis":"the operator''s employment or contract with the platform","retention":"until the operator is deleted","protection":"sealed with the operators platform key (AES-256-GCM)"}';
COMMENT ON COLUMN operators.email_hmac IS 'pii:{"data":["keyed hash of the e-mail address"],"purpose":"find the operator at login","basis":"the operator''s contract with the platform","retention":"with the operator","protection":"HMAC-SHA256 under the operators platform key"}';
COMMENT ON COLUMN operators.password_hash IS 'pii:{"data":["password hash (a credential)"],"purpose":"operator login","basis":"the operator''s contract with the platform","retention":"with the operator","protection":"Argon2id"}';
COMMENT ON COLUMN operator_password_history.operator_id IS 'pii:{"data":["the operator''s earlier password hashes"],"purpose":"recent passwords are not reused","basis":"security policy","retention":"the newest N; deleted with the operator","protection":"Argon2id hashes"}';
COMMENT ON COLUMN operator_password_history.password_hash IS 'pii:{"data":["earlier password hash (a credential)"],"purpose":"recent passwords are not reused","basis":"security policy","retention":"the newest N; deleted with the operator","protection":"Argon2id"}';
COMMENT ON COLUMN operator_login_throttles.subject IS 'pii:{"data":["keyed hash of an e-mail address tried or of a client address, or an operator id"],"purpose":"brute-force protection","basis":"legitimate interest: security (Art. 6(1)(f))","retention":"until the window or lockout ends","protection":"HMAC-SHA256 under the operators platform key"}';
COMMENT ON COLUMN operator_sessions.operator_id IS 'pii:{"data":["the operator''s login sessions: start, end, revocation"],"purpose":"sessions and refresh-token rotation","basis":"the operator''s contract with the platform","retention":"until the operator is deleted","protection":"plain metadata; refresh tokens only as SHA-256"}';
COMMENT ON COLUMN platform_audit_events.pii IS 'pii:{"data":["client address","user agent","an e-mail address (login attempts)"],"purpose":"accountability and security investigation","basis":"legitimate interest: security and accountability","retention":"the platform audit retention; unreadable once its subject is erased","protection":"sealed under a key of its subject, itself sealed with the audit platform key"}';
COMMENT ON COLUMN platform_audit_events.subject IS 'pii:{"data":["whose key seals the event''s personal data"],"purpose":"erasure by subject","basis":"legitimate interest: security and accountability","retention":"the platform audit retention","protection":"a random id"}';
COMMENT ON COLUMN platform_audit_events.actor_id IS 'pii:{"data":["who acted (operator id, or a system actor)"],"purpose":"accountability","basis":"legitimate interest: security and accountability","retention":"the platform audit retention","protection":"a random id"}';
COMMENT ON COLUMN platform_audit_events.target_id IS 'pii:{"data":["what was acted on (may be an operator id)"],"purpose":"accountability","basis":"legitimate interest: security and accountability","retention":"the platform audit retention","protection":"a random id"}';
COMMENT ON COLUMN platform_audit_subject_keys.subject IS 'pii:{"data":["an operator''s audit subject and their key"],"purpose":"seal and erase the personal data of their events","basis":"legitimate interest: security and accountability","retention":"until erased","protection":"the key sealed with the audit platform key"}';
-- Offboarding (0015) names the operators who asked for and confirmed it.
COMMENT ON COLUMN tenant_offboardings.requested_by IS 'pii:{"data":["who asked for the offboarding (operator id)"],"purpose":"the offboarding''s proof","basis":"legitimate interest: accountability of the platform","retention":"kept after the tenant is gone (the proof)","protection":"a random id"}';
COMMENT ON COLUMN tenant_offboardings.confirmed_by IS 'pii:{"data":["who confirmed the offboarding (operator id)"],"purpose":"the offboarding''s proof","basis":"legitimate interest: accountability of the platform","retention":"kept after the tenant is gone (the proof)","protection":"a random id"}';
COMMENT ON COLUMN agent_pairing_throttles.source_hmac IS 'pii:{"data":["keyed hash of a client address that tried pairing codes"],"purpose":"brute-force protection of agent pairing","basis":"legitimate interest: security (Art. 6(1)(f))","retention":"until the window ends (the stale sweep drops it)","protection":"HMAC-SHA256 under the agents platform key"}';

-- --- tenant content and this migration's tables ---

COMMENT ON COLUMN records.body IS 'pii:{"data":["the tenant''s own content: whatever personal data the tenant stores in its records"],"purpose":"the tenant''s data store","basis":"decided by the tenant (the controller)","retention":"until the tenant deletes the record, or is offboarded; erasure of a user does not touch it (the tenant erases there through the records API)","protection":"sealed with the tenant data key (AES-256-GCM)"}';
COMMENT ON COLUMN legal_holds.user_id IS 'pii:{"data":["the user a hold preserves"],"purpose":"preserve a person''s data for a legal reason","basis":"the tenant''s legal obligation (Art. 6(1)(c), Art. 17(3)(e))","retention":"for the tenant''s life (released holds stay as a record)","protection":"a random id (a pseudonym once the user is erased)"}';
COMMENT ON COLUMN legal_holds.reason IS 'pii:{"data":["free text of the tenant (a case reference; may name people)"],"purpose":"why data is preserved","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"plain, bounded to 1000 characters"}';
COMMENT ON COLUMN legal_holds.name IS 'pii:{"data":["short name of the hold (may name a case or a person)"],"purpose":"tell holds apart; named when a hold blocks an action","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"plain, bounded to 100 characters"}';
COMMENT ON COLUMN legal_holds.created_by IS 'pii:{"data":["who placed the hold (user or API key id)"],"purpose":"accountability","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"a random id"}';
COMMENT ON COLUMN legal_holds.released_by IS 'pii:{"data":["who released the hold (user or API key id)"],"purpose":"accountability","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"a random id"}';
COMMENT ON COLUMN erasure_requests.user_id IS 'pii:{"data":["the user whose erasure was asked for"],"purpose":"the register of erasures; run deferred ones","basis":"the tenant''s legal obligation (Art. 17, Art. 5(2) accountability)","retention":"for the tenant''s life","protection":"a random id: a pseudonym once the user is erased"}';
COMMENT ON COLUMN erasure_requests.reason IS 'pii:{"data":["free text of the requester (why; may name people despite the advice)"],"purpose":"the register of erasures","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"plain, bounded to 500 characters"}';
COMMENT ON COLUMN erasure_requests.requested_by IS 'pii:{"data":["who asked for the erasure (user or API key id)"],"purpose":"accountability","basis":"the tenant''s legal obligation","retention":"for the tenant''s life","protection":"a random id"}';
