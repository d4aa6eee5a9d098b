-- Key hygiene and customer-managed keys (BYOK).

-- Encryptions sealed with each data key version, for count-based rotation: AES-GCM with random 96-bit
-- nonces must stay well below 2^32 encryptions per key. Instances add their counts when they drop a key
-- from memory, so the total may lag by what one cache lifetime sealed.
ALTER TABLE tenant_keys ADD COLUMN encryptions bigint NOT NULL DEFAULT 0 CHECK (encryptions >= 0);
-- Rotate automatically once the current version has sealed this many times; null: the platform limit.
ALTER TABLE tenant_keyrings ADD COLUMN rotation_encryptions bigint CHECK (rotation_encryptions BETWEEN 1 AND 2147483648);

-- BYOK: each data key is split in two shares (key = share A xor share B). Share A is what wrapped_key
-- holds (wrapped by the root key); share B is wrapped by the customer's own KMS key. Both are needed, so
-- a customer who revokes their key makes the tenant's data unreadable, to the platform operator too.
ALTER TABLE tenant_keys ADD COLUMN customer_wrapped_share text;
ALTER TABLE tenant_keys ADD CHECK (wrapped_key IS NOT NULL OR customer_wrapped_share IS NULL);
-- The customer KMS connection (address, key name, token), sealed with a key of its own that the root
-- key wraps (purpose customer-kms-credentials); both NULL when the tenant has no customer key.
ALTER TABLE tenant_keyrings ADD COLUMN customer_kms_sealed bytea;
ALTER TABLE tenant_keyrings ADD COLUMN customer_kms_wrapped_key text;
ALTER TABLE tenant_keyrings ADD COLUMN customer_kms_configured_at timestamptz;
ALTER TABLE tenant_keyrings ADD CHECK ((customer_kms_sealed IS NULL) = (customer_kms_wrapped_key IS NULL));
