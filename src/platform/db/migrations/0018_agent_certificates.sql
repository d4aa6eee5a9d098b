-- Agent certificates (issue #10): agents may authenticate to the gateway with mutual TLS, using client
-- certificates issued at pairing (and renewed) by their tenant's own agent CA. The tenant table follows the
-- 0001 recipe (tenant-led key, FORCE RLS, restrictive guard, tenant policy).

-- One agent CA per tenant, made on first need (the first pairing or renewal of an Ed25519 agent; a racing
-- second one finds the first's row through the primary key). The certificate is public (agents get it at
-- pairing); the ECDSA P-384 private key (PKCS #8) is an envelope under the tenant's data key (AAD: tenant,
-- this table, `private_key`, the tenant id), so destroying the tenant's keys destroys it. Re-encrypted with
-- the tenant's other sealed columns after a key rotation.
CREATE TABLE agent_certificate_authorities (
  tenant_id   text        NOT NULL REFERENCES tenants (id),
  certificate bytea       NOT NULL CHECK (octet_length(certificate) BETWEEN 1 AND 8192),
  private_key bytea       NOT NULL CHECK (octet_length(private_key) BETWEEN 1 AND 1024),
  key_version integer     NOT NULL CHECK (key_version >= 1),
  not_after   timestamptz NOT NULL,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id)
);

ALTER TABLE agent_certificate_authorities ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_certificate_authorities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_guard ON agent_certificate_authorities AS RESTRICTIVE
  USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.scope', true) = 'platform')
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY tenant_isolation ON agent_certificate_authorities
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- No DELETE: a CA lives as long as its tenant (offboarding's purge, 0015, runs as the owner). UPDATE only
-- re-seals the private key after a rotation.
GRANT SELECT, INSERT, UPDATE ON agent_certificate_authorities TO {{app_role}};

-- The certificate an agent got last (serial and end of validity; the certificate itself is public and
-- not kept): shown in the agent list, so an admin sees which agents are due. NULL for agents paired with
-- an X25519 key (which cannot sign a TLS handshake) and for agents paired before this migration.
ALTER TABLE agents
  ADD COLUMN certificate_serial    text CHECK (certificate_serial ~ '^[0-9a-f]{32}$'),
  ADD COLUMN certificate_not_after timestamptz,
  ADD CHECK ((certificate_serial IS NULL) = (certificate_not_after IS NULL));
