-- Audit trail: per-scope hash chains (one per tenant, one for the platform), signed checkpoints, per-subject
-- keys for the personal data inside events, and delivery cursors for the sinks (webhook, bus).
--
-- Tenant tables follow the isolation recipe of 0001 (tenant-led keys, FORCE RLS, restrictive guard, tenant
-- policy, platform read). The platform chain lives in platform_audit_* tables of the same shape, keyed by
-- realm ('platform') instead of tenant_id, FORCE RLS with a platform-only policy (as the operator tables of
-- 0008): the audit module runs one set of statements against both.
--
-- Append-only by privilege: the app role may INSERT and SELECT events, never UPDATE them, and DELETE only
-- what retention has released (a restrictive policy: at or below the head's pruned_through, and older than
-- the retention period). Whoever goes around the role (the owner, a superuser, the disk) is caught by the
-- chain and the checkpoint signatures.

-- The head of a chain: the last sequence number and hash. Appending an event updates it in the same
-- statement that inserts the event, so the row lock serialises the writers of one chain (no forks, no gaps)
-- for no longer than that statement and its commit.
CREATE TABLE audit_heads (
  tenant_id       text        PRIMARY KEY REFERENCES tenants (id),
  seq             bigint      NOT NULL CHECK (seq >= 0),
  hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
  prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
  -- Events older than this many days may be pruned; NULL: kept for ever.
  retention_days  integer     CHECK (retention_days BETWEEN 1 AND 36500),
  -- Every event with seq <= pruned_through was pruned; a retention checkpoint at that seq keeps the boundary.
  pruned_through  bigint      NOT NULL DEFAULT 0 CHECK (pruned_through >= 0 AND pruned_through <= seq)
);
ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON audit_heads AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON audit_heads
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON audit_heads FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON audit_heads TO {{app_role}};

CREATE TABLE audit_events (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  seq          bigint      NOT NULL CHECK (seq > 0),
  id           text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  occurred_at  timestamptz NOT NULL,
  actor_kind   text        NOT NULL CHECK (actor_kind IN ('user', 'operator', 'api-key', 'agent', 'service', 'system', 'anonymous')),
  actor_id     text        CHECK (char_length(actor_id) <= 64),
  action       text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$' AND char_length(action) <= 64),
  target_type  text        CHECK (char_length(target_type) <= 64),
  target_id    text        CHECK (char_length(target_id) <= 200),
  outcome      text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  request_id   text        CHECK (char_length(request_id) <= 64),
  session_id   text        CHECK (char_length(session_id) <= 64),
  -- Redacted detail: ids, counts, names of settings; never secrets, never personal data (that goes in pii).
  detail       jsonb       NOT NULL,
  -- Whose key seals pii (`user:<id>`, `operator:<id>`, `api-key:<id>`, `anonymous`); NULL: no pii.
  subject      text        CHECK (char_length(subject) <= 80),
  -- Envelope of the event's personal data (source address, user agent, an e-mail) under the subject's key.
  pii          bytea,
  prev_hash    bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash         bytea       NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (tenant_id, seq),
  UNIQUE (tenant_id, id),
  CHECK ((subject IS NULL) = (pii IS NULL))
);
CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor_id, seq);
CREATE INDEX audit_events_target ON audit_events (tenant_id, target_id, seq);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON audit_events AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON audit_events
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON audit_events FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
-- Only what retention released can be deleted.
CREATE POLICY retention_only ON audit_events AS RESTRICTIVE FOR DELETE
  USING (EXISTS (SELECT 1 FROM audit_heads h WHERE h.tenant_id = audit_events.tenant_id AND audit_events.seq <= h.pruned_through
                   AND h.retention_days IS NOT NULL AND audit_events.occurred_at < now() - make_interval(days => h.retention_days)));
GRANT SELECT, INSERT, DELETE ON audit_events TO {{app_role}};

-- Signed checkpoints: an Ed25519 signature (key under the root key) over scope, seq and hash. `retention`
-- checkpoints mark the boundary below which events were pruned.
CREATE TABLE audit_checkpoints (
  tenant_id   text        NOT NULL REFERENCES tenants (id),
  seq         bigint      NOT NULL CHECK (seq > 0),
  hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
  kind        text        NOT NULL CHECK (kind IN ('periodic', 'retention')),
  key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  signature   bytea       NOT NULL CHECK (octet_length(signature) = 64),
  signed_at   timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON audit_checkpoints AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON audit_checkpoints
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON audit_checkpoints FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT ON audit_checkpoints TO {{app_role}};

-- One random 256-bit key per data subject, sealed under the tenant's data key (versioned, re-encrypted on
-- rotation, shredded with the tenant). Erasing a person destroys their key (sealed_key NULL): their events
-- stay in the chain and still verify (the chain covers the ciphertext), while the personal data in them can
-- no longer be opened. A subject that acts again gets a new key of the next generation; the generation is
-- the key version inside each event's envelope, so an older event is never tried with a newer key.
CREATE TABLE audit_subject_keys (
  tenant_id    text        NOT NULL REFERENCES tenants (id),
  subject      text        NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 80),
  generation   integer     NOT NULL CHECK (generation > 0),
  sealed_key   bytea,
  key_version  integer     CHECK (key_version > 0),
  created_at   timestamptz NOT NULL,
  erased_at    timestamptz,
  PRIMARY KEY (tenant_id, subject),
  CHECK ((sealed_key IS NULL) = (key_version IS NULL) AND (sealed_key IS NULL) = (erased_at IS NOT NULL))
);
ALTER TABLE audit_subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_subject_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON audit_subject_keys AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON audit_subject_keys
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON audit_subject_keys TO {{app_role}};

-- How far each sink has delivered a chain (the outbox cursor): events after it are delivered in order.
CREATE TABLE audit_deliveries (
  tenant_id   text        NOT NULL REFERENCES tenants (id),
  sink        text        NOT NULL CHECK (sink ~ '^[a-z][a-z0-9-]{0,31}$'),
  seq         bigint      NOT NULL CHECK (seq >= 0),
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, sink)
);
ALTER TABLE audit_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON audit_deliveries AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON audit_deliveries
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON audit_deliveries FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON audit_deliveries TO {{app_role}};

-- The platform chain: operators' and the platform's own actions. Same shapes, keyed by realm.
CREATE TABLE platform_audit_heads (
  realm           text        PRIMARY KEY CHECK (realm = 'platform'),
  seq             bigint      NOT NULL CHECK (seq >= 0),
  hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
  prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
  retention_days  integer     CHECK (retention_days BETWEEN 1 AND 36500),
  pruned_through  bigint      NOT NULL DEFAULT 0 CHECK (pruned_through >= 0 AND pruned_through <= seq)
);
CREATE TABLE platform_audit_events (
  realm        text        NOT NULL CHECK (realm = 'platform'),
  seq          bigint      NOT NULL CHECK (seq > 0),
  id           text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  occurred_at  timestamptz NOT NULL,
  actor_kind   text        NOT NULL CHECK (actor_kind IN ('user', 'operator', 'api-key', 'agent', 'service', 'system', 'anonymous')),
  actor_id     text        CHECK (char_length(actor_id) <= 64),
  action       text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$' AND char_length(action) <= 64),
  target_type  text        CHECK (char_length(target_type) <= 64),
  target_id    text        CHECK (char_length(target_id) <= 200),
  outcome      text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  request_id   text        CHECK (char_length(request_id) <= 64),
  session_id   text        CHECK (char_length(session_id) <= 64),
  detail       jsonb       NOT NULL,
  subject      text        CHECK (char_length(subject) <= 80),
  pii          bytea,
  prev_hash    bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
  hash         bytea       NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (realm, seq),
  UNIQUE (realm, id),
  CHECK ((subject IS NULL) = (pii IS NULL))
);
CREATE INDEX platform_audit_events_time ON platform_audit_events (realm, occurred_at);
CREATE INDEX platform_audit_events_actor ON platform_audit_events (realm, actor_id, seq);
CREATE INDEX platform_audit_events_target ON platform_audit_events (realm, target_id, seq);
CREATE TABLE platform_audit_checkpoints (
  realm       text        NOT NULL CHECK (realm = 'platform'),
  seq         bigint      NOT NULL CHECK (seq > 0),
  hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
  kind        text        NOT NULL CHECK (kind IN ('periodic', 'retention')),
  key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  signature   bytea       NOT NULL CHECK (octet_length(signature) = 64),
  signed_at   timestamptz NOT NULL,
  PRIMARY KEY (realm, seq)
);
-- Sealed under the `audit` platform key.
CREATE TABLE platform_audit_subject_keys (
  realm        text        NOT NULL CHECK (realm = 'platform'),
  subject      text        NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 80),
  generation   integer     NOT NULL CHECK (generation > 0),
  sealed_key   bytea,
  key_version  integer     CHECK (key_version > 0),
  created_at   timestamptz NOT NULL,
  erased_at    timestamptz,
  PRIMARY KEY (realm, subject),
  CHECK ((sealed_key IS NULL) = (key_version IS NULL) AND (sealed_key IS NULL) = (erased_at IS NOT NULL))
);
CREATE TABLE platform_audit_deliveries (
  realm       text        NOT NULL CHECK (realm = 'platform'),
  sink        text        NOT NULL CHECK (sink ~ '^[a-z][a-z0-9-]{0,31}$'),
  seq         bigint      NOT NULL CHECK (seq >= 0),
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (realm, sink)
);
ALTER TABLE platform_audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_audit_heads
  USING (current_setting('app.scope', true) = 'platform') WITH CHECK (current_setting('app.scope', true) = 'platform');
ALTER TABLE platform_audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_audit_events
  USING (current_setting('app.scope', true) = 'platform') WITH CHECK (current_setting('app.scope', true) = 'platform');
CREATE POLICY retention_only ON platform_audit_events AS RESTRICTIVE FOR DELETE
  USING (EXISTS (SELECT 1 FROM platform_audit_heads h WHERE h.realm = platform_audit_events.realm AND platform_audit_events.seq <= h.pruned_through
                   AND h.retention_days IS NOT NULL AND platform_audit_events.occurred_at < now() - make_interval(days => h.retention_days)));
ALTER TABLE platform_audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_audit_checkpoints
  USING (current_setting('app.scope', true) = 'platform') WITH CHECK (current_setting('app.scope', true) = 'platform');
ALTER TABLE platform_audit_subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_subject_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_audit_subject_keys
  USING (current_setting('app.scope', true) = 'platform') WITH CHECK (current_setting('app.scope', true) = 'platform');
ALTER TABLE platform_audit_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_audit_deliveries
  USING (current_setting('app.scope', true) = 'platform') WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON platform_audit_heads TO {{app_role}};
GRANT SELECT, INSERT, DELETE ON platform_audit_events TO {{app_role}};
GRANT SELECT, INSERT ON platform_audit_checkpoints TO {{app_role}};
GRANT SELECT, INSERT, UPDATE ON platform_audit_subject_keys TO {{app_role}};
GRANT SELECT, INSERT, UPDATE ON platform_audit_deliveries TO {{app_role}};
