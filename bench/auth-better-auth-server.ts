/**
 * Better Auth under the same session-check load as Bulwark's `GET /v1/me` (bench/auth.ts): a plain Fastify
 * route that asks `auth.api.getSession({ headers })` for the request's session cookie and answers the user.
 * Better Auth runs with its defaults (a session lookup in the database on every request; the signed
 * session-data cookie cache is off unless configured) on its own PostgreSQL database through `pg`. The
 * user signs up and signs in through Better Auth itself; the cookie of the sign-in is the one loaded.
 */
import { randomBytes } from 'node:crypto';
import { type BetterAuthOptions, betterAuth } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { fromNodeHeaders } from 'better-auth/node';
import Fastify from 'fastify';
import pg from 'pg';
import { runChild, specArgument } from './child.ts';
import type { AuthBetterAuthSpec } from './protocol.ts';

/** `name=value` of every Set-Cookie, as a browser would send them back. */
function cookieOf(response: Response): string {
  const cookies = response.headers.getSetCookie().map((header) => header.split(';', 1)[0] ?? '');
  if (!cookies.some((cookie) => cookie.includes('session_token='))) throw new Error(`Better Auth set no session cookie (HTTP ${response.status})`);
  return cookies.join('; ');
}

runChild(async () => {
  const spec = specArgument() as AuthBetterAuthSpec;
  const pool = new pg.Pool({ connectionString: spec.databaseUrl, max: spec.poolMax });
  try {
    const options = {
      database: pool,
      secret: randomBytes(32).toString('base64'),
      // Only used for links and origin checks, neither of which the session check involves.
      baseURL: 'http://127.0.0.1',
      emailAndPassword: { enabled: true },
      telemetry: { enabled: false },
      logger: { level: 'error' },
    } satisfies BetterAuthOptions;
    // Better Auth's own migrator creates its tables (user, session, account, verification).
    const { runMigrations } = await getMigrations(options);
    await runMigrations();
    const auth = betterAuth(options);

    const email = `bench-${randomBytes(6).toString('hex')}@example.org`;
    const password = `quiet meadow ${randomBytes(6).toString('hex')} compass`;
    const signUp = await auth.api.signUpEmail({ body: { email, password, name: 'Bench user' }, asResponse: true });
    if (signUp.status !== 200) throw new Error(`Better Auth sign-up answered ${signUp.status}: ${(await signUp.text()).slice(0, 300)}`);
    const signIn = await auth.api.signInEmail({ body: { email, password }, asResponse: true });
    if (signIn.status !== 200) throw new Error(`Better Auth sign-in answered ${signIn.status}: ${(await signIn.text()).slice(0, 300)}`);
    const cookie = cookieOf(signIn);

    const app = Fastify({ logger: false });
    app.get('/v1/me', async (request, reply) => {
      const session = await auth.api.getSession({ headers: fromNodeHeaders(request.headers) });
      if (session === null) return reply.code(401).send({ error: 'unauthenticated' });
      return session.user;
    });
    return { app, report: { target: { path: '/v1/me', headers: { cookie }, email } }, close: () => pool.end() };
  } catch (error) {
    await pool.end();
    throw error;
  }
});
