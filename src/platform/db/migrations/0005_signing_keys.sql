-- Access-token signing keys (Ed25519, `kid` rotation, JWKS).
--
-- Platform table (on the RLS allow-list, like operator_bootstrap): the keys sign every tenant's tokens and
-- hold no tenant data. The private key is never stored in clear: its PKCS#8 DER is sealed with AES-256-GCM
-- (the envelope format, associated data bound to this table, column and kid) under a random 256-bit key,
-- and that key is wrapped by the root key provider (purpose signing-key).
--
-- Lifecycle: created and activated together (the signing key; at most one at a time), then retired by a
-- rotation: it stops signing and its private material is destroyed at once (nothing signs with a retired
-- key), while its public key stays in the JWKS until retired_at + the longest access-token lifetime.
CREATE TABLE signing_keys (
  kid                 text        PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{16}$'),
  alg                 text        NOT NULL CHECK (alg = 'EdDSA'),
  -- The public JWK (kty OKP, crv Ed25519, x): what the JWKS publishes.
  public_jwk          jsonb       NOT NULL CHECK (jsonb_typeof(public_jwk) = 'object'),
  -- NULL once destroyed: the private key is gone for good.
  private_sealed      bytea,
  private_wrapped_key text,
  created_at          timestamptz NOT NULL,
  activated_at        timestamptz,
  retired_at          timestamptz,
  destroyed_at        timestamptz,
  CHECK ((private_sealed IS NULL) = (private_wrapped_key IS NULL)),
  CHECK ((private_sealed IS NULL) = (destroyed_at IS NOT NULL)),
  -- Only a retired key may lose its private material; a retired key was active first.
  CHECK (destroyed_at IS NULL OR retired_at IS NOT NULL),
  CHECK (retired_at IS NULL OR activated_at IS NOT NULL)
);
-- At most one signing key: two instances rotating at once cannot both activate one.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE activated_at IS NOT NULL AND retired_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON signing_keys TO {{app_role}};
