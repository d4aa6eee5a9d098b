import { Type } from 'typebox';
import { BulwarkError } from '../errors/bulwark-error.ts';
import type { RoutePlugin } from '../http/route-kit.ts';

/** The self-managed CA's certificate, public: what clients add to their trust store (docs/tls.md). */
export const tlsRoutes: RoutePlugin<{ caPem: string | undefined }> = async (app, { caPem }) => {
  app.get(
    '/v1/tls/ca.pem',
    {
      config: { auth: 'public' },
      schema: {
        tags: ['tls'],
        summary: 'Certificate of the self-managed TLS CA',
        description:
          'The PEM certificate of the CA that issues this deployment\'s server certificates when `BULWARK_TLS=on` runs without certificate files (ECDSA P-384, one CA shared by every instance). Fetched over a connection not yet trusted, it must be checked against the SHA-256 fingerprint the server logs at start (`caFingerprint`) before a client trusts it. 404 `not_found` when TLS is off or served from the operator\'s files.',
        response: { 200: { description: 'The CA certificate.', content: { 'application/x-pem-file': { schema: Type.String() } } } },
      },
    },
    async (_request, reply) => {
      if (caPem === undefined) throw new BulwarkError('not_found', { message: 'This deployment has no self-managed TLS CA (BULWARK_TLS=on without certificate files makes one).' });
      // Public and long-lived (10 years): caches may keep it; an error stays no-store.
      return reply.type('application/x-pem-file').header('cache-control', 'public, max-age=3600').send(caPem);
    },
  );
};
