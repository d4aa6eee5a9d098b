import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { BulwarkError } from '../errors/bulwark-error.ts';
import { type ErrorCode, errorCodes } from '../errors/codes.ts';
import { sqlState } from '../db/database.ts';

export const problemContentType = 'application/problem+json';

/** RFC 9457 problem document as Bulwark sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance: string;
  requestId: string;
  [extension: string]: unknown;
}

export function problemType(code: ErrorCode): string {
  return `urn:bulwark:error:${code}`;
}

/** Maps anything thrown in a request to a BulwarkError; unknown failures become a bare internal_error. */
export function toBulwarkError(error: unknown): BulwarkError {
  if (error instanceof BulwarkError) return error;
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    return new BulwarkError('validation_failed', {
      cause: error,
      extensions: {
        errors: fastifyError.validation.map((issue) => {
          const { instancePath, message, params } = issue as { instancePath?: string; message?: string; params?: Record<string, unknown> };
          // The unknown field's name is the client's text: quoted, but never at length.
          const extra = typeof params?.['additionalProperty'] === 'string' ? ` (${params['additionalProperty'].slice(0, 64)})` : '';
          return { in: fastifyError.validationContext ?? 'body', path: instancePath ?? '', message: `${message ?? 'is invalid'}${extra}` };
        }),
      },
    });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new BulwarkError('unsupported_media_type', { cause: error });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new BulwarkError('payload_too_large', { cause: error });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new BulwarkError('malformed_json', { cause: error });
    // A path that cannot be decoded or a parameter over the router's length limit (Fastify says 414).
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new BulwarkError('validation_failed', { cause: error });
    default:
      break;
  }
  if (error instanceof SyntaxError) return new BulwarkError('malformed_json', { cause: error });
  const state = sqlState(error);
  if (state !== undefined && (state.startsWith('08') || state.startsWith('57P') || state === '53300')) {
    return new BulwarkError('service_unavailable', { cause: error, detail: `database unavailable (${state})` });
  }
  // BULWARK_DATABASE_STATEMENT_TIMEOUT_MS cancelled a statement: its transaction rolled back, a retry may pass.
  if (state === '57014') return new BulwarkError('service_unavailable', { cause: error, detail: 'statement timeout (57014)' });
  // Text the database cannot store (a NUL character in a name, say): the client's input, not our fault.
  if (state === '22021' || state === '22P05') {
    return new BulwarkError('validation_failed', { cause: error, message: 'The request contains a character that cannot be stored.', detail: `database rejected text (${state})` });
  }
  // Row-level security or grant refusal: the database said no, so the caller may not do this.
  if (state === '42501') return new BulwarkError('forbidden', { cause: error, detail: 'database refused (42501)' });
  const nodeCode = (error as { code?: unknown }).code;
  if (typeof nodeCode === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND'].includes(nodeCode)) {
    return new BulwarkError('service_unavailable', { cause: error, detail: `dependency unreachable (${nodeCode})` });
  }
  if (error instanceof Error && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(error.message)) {
    return new BulwarkError('service_unavailable', { cause: error, detail: 'database connection lost' });
  }
  const status = typeof fastifyError.statusCode === 'number' ? fastifyError.statusCode : 500;
  if (status >= 400 && status < 500) return new BulwarkError(codeForClientStatus(status), { cause: error });
  return new BulwarkError('internal_error', { cause: error });
}

function codeForClientStatus(status: number): ErrorCode {
  const match = (Object.keys(errorCodes) as ErrorCode[]).find((code) => errorCodes[code].status === status);
  return match ?? 'validation_failed';
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: BulwarkError): FastifyReply {
  const members = {
    type: problemType(error.code),
    title: errorCodes[error.code].title,
    status: error.status,
    code: error.code,
    detail: error.message,
    instance: request.url.split('?')[0] ?? '/',
    requestId: request.id,
  };
  // The RFC 9457 members first (as a reader expects them) and always winning over an extension of the same name.
  const problem: Problem = { ...members, ...error.extensions, ...members };
  if (error.headers) reply.headers(error.headers);
  return reply.code(error.status).type(problemContentType).send(htmlSafeJson(problem));
}

/**
 * A problem may quote the request (its path, an unknown field's name). As JSON those are data, but a
 * browser sniffing or a log viewer rendering the text would see markup: `<`, `>` and `&` (and the line
 * separators JavaScript treats as newlines) go out as \u escapes, which every JSON parser reads back the same.
 */
function htmlSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * What the HTTP parser refuses before any route or hook runs (smuggling shapes, header injection, slow or
 * oversized headers) still gets a problem document, with a fresh request id and the API's headers, instead
 * of Fastify's ad-hoc JSON. The connection is closed: after a parse error its byte stream cannot be trusted.
 */
export function sendClientErrorProblem(error: Error & { code?: string }, socket: Duplex, newRequestId: () => string, headers: Record<string, string>): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : error.code === 'HPE_HEADER_OVERFLOW' ? 'request_headers_too_large' : 'malformed_request';
  const { status, title } = errorCodes[code];
  const requestId = newRequestId();
  const body = htmlSafeJson({ type: problemType(code), title, status, code, detail: title, instance: '/', requestId } satisfies Problem);
  const lines = Object.entries({
    ...headers,
    'content-type': `${problemContentType}; charset=utf-8`,
    'content-length': String(Buffer.byteLength(body)),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    connection: 'close',
  }).map(([name, value]) => `${name}: ${value}\r\n`);
  if (socket.writable) socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines.join('')}\r\n${body}`);
  socket.destroy(error);
}
