-- Agents (issue #8): pairing codes, paired agents with their last reports, and the per-address throttle of
-- the pairing route. Tenant tables follow the 0001 recipe (tenant-led keys, FORCE RLS, restrictive guard,
-- tenant policy); the throttle is a platform table that only the platform scope reaches.

-- A pairing code a tenant admin made, until an agent spends it or it expires. The code itself is never
-- stored: its HMAC under the platform's `agents` key, so `POST /v1/agents/pair` (which names no tenant)
-- finds it in the platform scope, and a copy of the database alone cannot be searched for codes offline.
CREATE TABLE agent_pairing_codes (
  tenant_id  text        NOT NULL REFERENCES tenants (id),
  id         text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  code_hmac  bytea       NOT NULL CHECK (octet_length(code_hmac) = 32),
  -- The name the admin suggested for the agent (the agent's own name wins when it sends one).
  name_hint  text        CHECK (char_length(name_hint) BETWEEN 1 AND 100),
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, id)
);
-- Across tenants: a code leads to exactly one tenant (a colliding new code is drawn again).
CREATE UNIQUE INDEX agent_pairing_codes_hmac ON agent_pairing_codes (code_hmac);
CREATE INDEX agent_pairing_codes_expiry ON agent_pairing_codes (tenant_id, expires_at);

-- A paired agent. Its token (`bwag_...`) is kept as a SHA-256 only; the public key is the one it generated.
-- The last reports (heartbeat, health, stats) live on the row: only the latest of each is kept.
CREATE TABLE agents (
  tenant_id         text        NOT NULL REFERENCES tenants (id),
  id                text        NOT NULL CHECK (id ~ '^[0-9a-f]{12}$'),
  name              text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  status            text        NOT NULL CHECK (status IN ('active', 'revoked')),
  token_hash        bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
  public_key_type   text        NOT NULL CHECK (public_key_type IN ('ed25519', 'x25519')),
  public_key        bytea       NOT NULL CHECK (octet_length(public_key) = 32),
  -- How it reaches the bus: its own NATS user (whose public key revocation names), or the HTTP gateway.
  bus_kind          text        NOT NULL CHECK (bus_kind IN ('nats', 'http')),
  bus_user_key      text        CHECK (char_length(bus_user_key) <= 128),
  paired_at         timestamptz NOT NULL,
  last_seen_at      timestamptz,
  stale             boolean     NOT NULL DEFAULT false,
  health            text        CHECK (health IN ('ok', 'degraded', 'down')),
  health_message    text        CHECK (char_length(health_message) <= 256),
  health_changed_at timestamptz,
  stats             jsonb,
  stats_at          timestamptz,
  revoked_at        timestamptz,
  PRIMARY KEY (tenant_id, id),
  CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
  CHECK ((bus_kind = 'nats') = (bus_user_key IS NOT NULL))
);
-- The stale sweep's scan: active agents by when they were last heard of.
CREATE INDEX agents_silence ON agents (coalesce(last_seen_at, paired_at)) WHERE status = 'active' AND NOT stale;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['agent_pairing_codes', 'agents'] LOOP
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

-- The pairing route learns the tenant from the code: the platform scope reads pairing codes (keyed hashes,
-- tenant ids and expiry; the code is spent under the tenant's own context).
CREATE POLICY platform_read ON agent_pairing_codes FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
-- The stale sweep looks across tenants for active agents gone silent (and marks them under each tenant's
-- context): the platform scope reads those rows only.
CREATE POLICY platform_read ON agents FOR SELECT
  USING (current_setting('app.scope', true) = 'platform' AND status = 'active' AND NOT stale);

-- Failed pairings per client address (its HMAC under the `agents` platform key), in a fixed window: each
-- attempt reserves a check before the code is looked up, so parallel guesses cannot exceed the budget.
CREATE TABLE agent_pairing_throttles (
  source_hmac       bytea       PRIMARY KEY CHECK (octet_length(source_hmac) = 32),
  failures          integer     NOT NULL CHECK (failures >= 0),
  window_started_at timestamptz NOT NULL
);
ALTER TABLE agent_pairing_throttles ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_pairing_throttles FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON agent_pairing_throttles
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');

GRANT SELECT, INSERT, UPDATE, DELETE ON agent_pairing_codes, agents, agent_pairing_throttles TO {{app_role}};
