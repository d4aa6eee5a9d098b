-- The self-managed TLS CA (BULWARK_TLS=on without certificate files, src/platform/tls/).
--
-- Platform table (on the RLS allow-list and platform-only, like platform_keys): one CA for the whole
-- deployment, so every instance's server certificate chains to the one CA clients trust, whichever instance
-- answers. Each instance issues its own short-lived server certificate from it in memory; those and their
-- keys are never stored. The CA's private key is never stored in clear: its PKCS#8 DER is sealed with
-- AES-256-GCM (the envelope format, associated data bound to this table, column and id) under a random
-- 256-bit key, and that key is wrapped by the root key provider (purpose tls-ca).
--
-- The first instance to start with self-managed TLS creates the row; instances starting together each make
-- a candidate and INSERT ... ON CONFLICT DO NOTHING, then all read back the one that won.
CREATE TABLE tls_ca (
  id                  text        PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{0,62}$'),
  certificate_pem     text        NOT NULL CHECK (char_length(certificate_pem) BETWEEN 1 AND 16384),
  private_sealed      bytea       NOT NULL CHECK (octet_length(private_sealed) BETWEEN 1 AND 4096),
  private_wrapped_key text        NOT NULL CHECK (char_length(private_wrapped_key) BETWEEN 1 AND 4096),
  created_at          timestamptz NOT NULL,
  not_after           timestamptz NOT NULL
);
ALTER TABLE tls_ca ENABLE ROW LEVEL SECURITY;
ALTER TABLE tls_ca FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON tls_ca
  USING (current_setting('app.scope', true) = 'platform')
  WITH CHECK (current_setting('app.scope', true) = 'platform');
GRANT SELECT, INSERT ON tls_ca TO {{app_role}};
