import { pino, type Logger } from 'pino';

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

function serializeRequest(request: { method?: string; url?: string; ip?: string; headers?: Record<string, unknown> }) {
  return {
    method: request.method,
    // The query string is dropped: cursors and future filters are caller-controlled text.
    path: request.url?.split('?')[0],
    remoteAddress: request.ip,
    userAgent: request.headers?.['user-agent'],
  };
}
