/**
 * The closed registry of error codes Bulwark puts on the wire. A code is never reused or renamed:
 * clients and runbooks key on it. `docs/errors.md` documents each one and a test keeps the two in step.
 */
export const errorCodes = {
  validation_failed: { status: 400, title: 'The request is invalid.' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON.' },
  invalid_cursor: { status: 400, title: 'The pagination cursor is invalid.' },
  malformed_request: { status: 400, title: 'The request is not valid HTTP.' },
  mfa_challenge_invalid: { status: 401, title: 'The MFA challenge is unknown, spent or expired; log in again.' },
  invalid_mfa_code: { status: 401, title: 'The second-factor proof is wrong.' },
  sso_failed: { status: 401, title: 'The identity provider did not vouch for this login.' },
  invalid_pairing_code: { status: 401, title: 'The pairing code is unknown, spent or expired.' },
  unauthenticated: { status: 401, title: 'Authentication is required.' },
  invalid_credentials: { status: 401, title: 'The credentials are invalid or expired.' },
  forbidden: { status: 403, title: 'The credentials do not allow this action.' },
  account_disabled: { status: 403, title: 'The account is disabled.' },
  password_change_required: { status: 403, title: 'The password must be changed before logging in.' },
  reauthentication_required: { status: 403, title: 'This change needs a recent login: log in again, then retry.' },
  mfa_disabled: { status: 403, title: "The tenant's MFA policy is off: factors cannot be enrolled." },
  sso_required: { status: 403, title: 'The tenant requires single sign-on: log in through its identity provider.' },
  sso_user_not_provisioned: { status: 403, title: 'No user is linked to this identity, and the connection does not create users.' },
  support_grant_required: { status: 403, title: 'A support-access grant of the tenant is required.' },
  tenant_suspended: { status: 403, title: 'The tenant is suspended.' },
  quota_exceeded: { status: 403, title: "The tenant's quota does not allow this." },
  not_found: { status: 404, title: 'The resource does not exist.' },
  route_not_found: { status: 404, title: 'No route matches this path.' },
  method_not_allowed: { status: 405, title: 'The method is not allowed on this path.' },
  conflict: { status: 409, title: 'The resource already exists or changed concurrently.' },
  setup_completed: { status: 409, title: 'Setup is done; the setup token is spent.' },
  precondition_failed: { status: 412, title: 'The resource does not match the precondition.' },
  request_timeout: { status: 408, title: 'The request did not arrive in time.' },
  payload_too_large: { status: 413, title: 'The request body is too large.' },
  unsupported_media_type: { status: 415, title: "The request body is not in the route's media type (JSON, unless the route says otherwise)." },
  request_headers_too_large: { status: 431, title: 'The request headers are too large.' },
  region_not_allowed: { status: 422, title: 'The region is not one of the configured regions.' },
  customer_key_rejected: { status: 422, title: 'The customer-managed key settings do not work.' },
  domain_not_verified: { status: 422, title: "The domain's DNS TXT record does not carry the verification token." },
  password_policy_violation: { status: 422, title: "The password does not meet the tenant's password policy." },
  invalid_ciphertext: { status: 400, title: 'The ciphertext is malformed or does not belong here.' },
  key_version_retired: { status: 409, title: 'The data was encrypted with a key version that no longer decrypts.' },
  keys_destroyed: { status: 410, title: "The tenant's keys were destroyed; its encrypted data is unreadable." },
  key_access_denied: { status: 423, title: 'The key management service refused access to the root key.' },
  customer_key_access_denied: { status: 423, title: "The customer's key management service refused access to the tenant key." },
  too_many_attempts: { status: 429, title: 'Too many failed attempts; retry later.' },
  rate_limited: { status: 429, title: 'Too many requests; retry later.' },
  concurrency_limit_exceeded: { status: 429, title: 'Too many requests in progress; retry shortly.' },
  internal_error: { status: 500, title: 'An internal error occurred.' },
  data_integrity_failed: { status: 500, title: 'Stored data failed its integrity check.' },
  sso_provider_unavailable: { status: 502, title: 'The identity provider could not be reached or answered garbage.' },
  service_unavailable: { status: 503, title: 'A dependency is unavailable; retry later.' },
  rate_limiter_unavailable: { status: 503, title: 'The rate-limit store is unreachable; retry later.' },
  key_provider_unavailable: { status: 503, title: 'The key management service is unreachable; retry later.' },
  customer_key_unavailable: { status: 503, title: "The customer's key management service is unreachable; retry later." },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(errorCodes, value);
}
