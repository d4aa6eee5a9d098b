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

-- The head of a chain: the last sequence number and hash. Appending an event (the functions at the end)
-- updates it and inserts the event in one call, so the row lock serialises the writers of one chain (no
-- forks, no gaps) for no longer than that call and its commit.
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
-- Appends arrive in time order, so a BRIN index serves time ranges for almost nothing per insert. Queries by
-- actor or target walk the chain in sequence order instead: measured, two btree indexes for them cost a
-- quarter of the audited write rate (bench/audit.ts), for filters only an administrator runs.
CREATE INDEX audit_events_time ON audit_events USING brin (tenant_id, occurred_at);
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
CREATE INDEX platform_audit_events_time ON platform_audit_events USING brin (realm, occurred_at);
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

-- Appending an event, in one call under the head's row lock: a fresh 48-bit id from PostgreSQL's CSPRNG
-- (gen_random_uuid), drawn again while an earlier event of the chain holds it (invariant 5); the next sequence
-- number; hash(n) = SHA-256(label || u64be(n) || hash(n-1) || id || body digest), where the application
-- computed the digest of everything else (src/modules/audit/chain.ts); the head created with its genesis hash
-- on a chain's first event. SECURITY INVOKER (the default): the caller's role and RLS context apply. The
-- caller need not wait for it: the statement can be pipelined with the COMMIT, and an error aborts the
-- transaction (PostgreSQL then answers the COMMIT with a rollback).
CREATE FUNCTION bulwark_audit_append(
  p_scope text, p_genesis bytea, p_label bytea, p_digest bytea, p_occurred_at timestamptz, p_actor_kind text, p_actor_id text,
  p_action text, p_target_type text, p_target_id text, p_outcome text, p_request_id text, p_session_id text, p_detail jsonb,
  p_subject text, p_pii bytea
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id text;
  v_seq bigint;
  v_prev bytea;
  v_hash bytea;
BEGIN
  LOOP
    v_id := substr(replace(gen_random_uuid()::text, '-', ''), 1, 12);
    EXIT WHEN NOT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = p_scope AND id = v_id);
  END LOOP;
  UPDATE audit_heads SET seq = seq + 1, prev_hash = hash,
         hash = sha256(p_label || int8send(seq + 1) || hash || convert_to(v_id, 'UTF8') || p_digest)
   WHERE tenant_id = p_scope RETURNING seq, prev_hash, hash INTO v_seq, v_prev, v_hash;
  IF NOT FOUND THEN
    INSERT INTO audit_heads (tenant_id, seq, hash, prev_hash) VALUES (p_scope, 0, p_genesis, p_genesis) ON CONFLICT DO NOTHING;
    UPDATE audit_heads SET seq = seq + 1, prev_hash = hash,
           hash = sha256(p_label || int8send(seq + 1) || hash || convert_to(v_id, 'UTF8') || p_digest)
     WHERE tenant_id = p_scope RETURNING seq, prev_hash, hash INTO v_seq, v_prev, v_hash;
  END IF;
  INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_kind, actor_id, action, target_type, target_id, outcome,
                            request_id, session_id, detail, subject, pii, prev_hash, hash)
  VALUES (p_scope, v_seq, v_id, p_occurred_at, p_actor_kind, p_actor_id, p_action, p_target_type, p_target_id, p_outcome,
          p_request_id, p_session_id, p_detail, p_subject, p_pii, v_prev, v_hash);
  RETURN v_seq;
END
$$;

-- The same steps on the platform's tables. Two functions with static SQL rather than one with EXECUTE: static
-- statements are planned once per session, dynamic ones on every call, and this is on every write's path.
CREATE FUNCTION bulwark_platform_audit_append(
  p_scope text, p_genesis bytea, p_label bytea, p_digest bytea, p_occurred_at timestamptz, p_actor_kind text, p_actor_id text,
  p_action text, p_target_type text, p_target_id text, p_outcome text, p_request_id text, p_session_id text, p_detail jsonb,
  p_subject text, p_pii bytea
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id text;
  v_seq bigint;
  v_prev bytea;
  v_hash bytea;
BEGIN
  LOOP
    v_id := substr(replace(gen_random_uuid()::text, '-', ''), 1, 12);
    EXIT WHEN NOT EXISTS (SELECT 1 FROM platform_audit_events WHERE realm = p_scope AND id = v_id);
  END LOOP;
  UPDATE platform_audit_heads SET seq = seq + 1, prev_hash = hash,
         hash = sha256(p_label || int8send(seq + 1) || hash || convert_to(v_id, 'UTF8') || p_digest)
   WHERE realm = p_scope RETURNING seq, prev_hash, hash INTO v_seq, v_prev, v_hash;
  IF NOT FOUND THEN
    INSERT INTO platform_audit_heads (realm, seq, hash, prev_hash) VALUES (p_scope, 0, p_genesis, p_genesis) ON CONFLICT DO NOTHING;
    UPDATE platform_audit_heads SET seq = seq + 1, prev_hash = hash,
           hash = sha256(p_label || int8send(seq + 1) || hash || convert_to(v_id, 'UTF8') || p_digest)
     WHERE realm = p_scope RETURNING seq, prev_hash, hash INTO v_seq, v_prev, v_hash;
  END IF;
  INSERT INTO platform_audit_events (realm, seq, id, occurred_at, actor_kind, actor_id, action, target_type, target_id, outcome,
                                     request_id, session_id, detail, subject, pii, prev_hash, hash)
  VALUES (p_scope, v_seq, v_id, p_occurred_at, p_actor_kind, p_actor_id, p_action, p_target_type, p_target_id, p_outcome,
          p_request_id, p_session_id, p_detail, p_subject, p_pii, v_prev, v_hash);
  RETURN v_seq;
END
$$;
REVOKE ALL ON FUNCTION bulwark_audit_append FROM PUBLIC;
REVOKE ALL ON FUNCTION bulwark_platform_audit_append FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulwark_audit_append TO {{app_role}};
GRANT EXECUTE ON FUNCTION bulwark_platform_audit_append TO {{app_role}};
