import { type ErrorCode, errorCodes } from './codes.ts';

export interface BulwarkErrorOptions {
  /** A public message that is safe to send; defaults to the code's title. */
  message?: string;
  /** Internal detail for logs only: never rendered to clients. */
  detail?: string;
  cause?: unknown;
  /** Extra public members of the problem document (e.g. field errors, allowed methods). */
  extensions?: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** The one error class of Bulwark. Only `code`, the public message and `extensions` ever leave the process. */
export class BulwarkError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;
  readonly extensions: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, options: BulwarkErrorOptions = {}) {
    super(options.message ?? errorCodes[code].title, { cause: options.cause });
    this.name = 'BulwarkError';
    this.code = code;
    this.status = errorCodes[code].status;
    this.detail = options.detail;
    this.extensions = options.extensions;
    this.headers = options.headers;
  }
}

export function notFound(): BulwarkError {
  return new BulwarkError('not_found');
}
