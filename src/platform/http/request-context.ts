import { AsyncLocalStorage } from 'node:async_hooks';

/** Who acts in a request, as the audit trail records it. */
export interface Actor {
  kind: 'user' | 'operator' | 'api-key' | 'agent' | 'service' | 'system' | 'anonymous';
  id: string | null;
}

/** What the audit trail needs to know about the request an event happens in. */
export interface RequestContext {
  requestId: string;
  /** The client address as the server sees it (behind proxies: BULWARK_TRUST_PROXY, later). */
  source: string;
  userAgent: string | null;
  actor: Actor | null;
  sessionId: string | null;
  /** The support grant an operator acts through in this request. */
  grantId: string | null;
}

const storage = new AsyncLocalStorage<RequestContext>();

/**
 * The request an audit event belongs to, without passing it through every service call: the app runs each
 * handler inside `runInRequest` (a preHandler hook, after the body is parsed: body parsing happens in the
 * socket's async context, which would lose a context set earlier). Work started outside a request (timers,
 * the CLI) has none, and is recorded as the system's.
 */
export function runInRequest(context: RequestContext, work: () => void): void {
  storage.run(context, work);
}

export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

/**
 * The request's caller proved who they are without a bearer token (a password change with the current
 * password): from here on its events are that account's.
 */
export function actAs(actor: Actor): void {
  const context = storage.getStore();
  if (context !== undefined) context.actor = actor;
}
