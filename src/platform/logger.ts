import { pino, type Logger } from 'pino';
import { isId } from './ids.ts';

/**
 * Structured JSON logs. Request lines carry requestId (and tenantId / principal once authenticated).
 * Credentials are redacted by path, and errors are reduced to name, message, code and stack: driver
 * errors carry `detail` and `where` fields that can quote row values, so those never reach a log line.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'bulwark' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          'req.headers["x-api-key"]',
          'res.headers["set-cookie"]',
          // pino's wildcards match one level, so each depth a credential may sit at is listed.
          ...['password', 'token', 'secret', 'setupToken', 'apiKey', 'key'].flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
        ],
        censor: '[redacted]',
      },
      serializers: { err: serializeError, error: serializeError, req: serializeRequest },
    },
    destination,
  );
}

export function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: 'non-error thrown' };
  const { code, constraint, status } = error as { code?: unknown; constraint?: unknown; status?: unknown };
  return {
    type: error.name,
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof constraint === 'string' ? { constraint } : {}),
    ...(typeof status === 'number' ? { status } : {}),
    stack: error.stack,
    ...(error.cause instanceof Error ? { cause: serializeError(error.cause) } : {}),
  };
}

interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
  headers?: Record<string, unknown>;
  /** Set by Fastify once a route matched: its pattern, and the path parameters. */
  routeOptions?: { url?: string | undefined };
  params?: unknown;
}

/**
 * The path as the route's pattern with its id parameters filled in. Any other parameter (a collection, secret,
 * role or domain name) is the tenant's own text and stays `:name`: an offboarded tenant's data must not
 * outlive it in the logs. The query string is dropped: cursors and filters are caller-controlled text. A path
 * no route matched reached no tenant's data and is logged as sent.
 */
function loggedPath(request: LoggedRequest): string | undefined {
  const pattern = request.routeOptions?.url;
  if (pattern === undefined) return request.url?.split('?')[0];
  const params = (typeof request.params === 'object' && request.params !== null ? request.params : {}) as Record<string, unknown>;
  return pattern.replace(/:(\w+)/g, (whole, name: string) => {
    const value = params[name];
    return typeof value === 'string' && isId(value) ? value : whole;
  });
}

function serializeRequest(request: LoggedRequest) {
  return {
    method: request.method,
    path: loggedPath(request),
    remoteAddress: request.ip,
    userAgent: request.headers?.['user-agent'],
  };
}
