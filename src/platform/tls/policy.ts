import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';

/** TLS 1.3 suites: all AEAD with ephemeral key exchange by design; the 256-bit ones first. */
const tls13Suites = ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'];

/**
 * TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher (AES-GCM, ChaCha20-Poly1305) only, so no CBC
 * (Lucky13, padding oracles), no static RSA key exchange, no SHA-1 MAC. ECDSA first (the self-managed
 * certificate), RSA kept so an operator's RSA certificate still serves.
 */
const tls12Suites = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
];

/**
 * The one TLS policy of the API listener, applied at construction and on every certificate swap
 * (`setSecureContext` rebuilds the context from what it is given, so a swap without it would fall back to
 * Node's defaults). Node needs the 1.3 suites in the same `ciphers` string: without any, it would turn
 * TLS 1.3 off. `@SECLEVEL=2` makes OpenSSL refuse keys under 112-bit strength (RSA < 2048) and SHA-1
 * signatures. Renegotiation is off (TLS 1.3 has none; in 1.2 it is a client-driven CPU cost and the
 * ground of old injection attacks) and so is compression (CRIME), which OpenSSL 3 disables already.
 */
export const tlsPolicy = {
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.3',
  ciphers: [...tls13Suites, ...tls12Suites, '@SECLEVEL=2'].join(':'),
  honorCipherOrder: true,
  ecdhCurve: 'X25519:P-384:P-256',
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION,
} as const satisfies SecureContextOptions;
