-- Limits (issue #6): an operator's per-tenant overrides of the platform's rate limits, quotas and
-- concurrency caps, and the tenant's usage counters that quotas are checked against.
-- Both are tenant tables with the isolation recipe of 0001.

CREATE TABLE tenant_limits (
  tenant_id  text        PRIMARY KEY REFERENCES tenants (id),
  -- Only the overridden values ({"rates": {...}, "quotas": {...}, "maxConcurrentRequests": n}); the API
  -- validates the document, and the service reads it defensively.
  overrides  jsonb       NOT NULL CHECK (jsonb_typeof(overrides) = 'object'),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON tenant_limits AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON tenant_limits
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON tenant_limits FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON tenant_limits TO {{app_role}};

-- The records quota is checked on every record write, so it is a counter row updated in the write's own
-- transaction (a guarded increment: the UPDATE matches only while the new total stays within the quota),
-- not a count over the table. The row appears on a tenant's first record write after this migration,
-- counted from the records it already has. Users and API keys change rarely and are counted exactly.
CREATE TABLE tenant_usage (
  tenant_id    text        PRIMARY KEY REFERENCES tenants (id),
  records      bigint      NOT NULL CHECK (records >= 0),
  record_bytes bigint      NOT NULL CHECK (record_bytes >= 0),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON tenant_usage AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON tenant_usage
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY platform_read ON tenant_usage FOR SELECT
  USING (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT, UPDATE ON tenant_usage TO {{app_role}};
