/**
 * The message bus: subjects are dot-separated tokens, tenant-scoped as `bulwark.t.<tenantId>.>` (issue #8
 * adds NATS and per-credential subject permissions). A subscription pattern may use `*` (one token) and
 * `>` (one or more trailing tokens), as NATS does.
 */
export interface Bus {
  publish(subject: string, payload: unknown): Promise<void>;
  subscribe(pattern: string, handler: (subject: string, payload: unknown) => void): () => void;
}

const token = /^[A-Za-z0-9_-]+$/;

export function assertSubject(subject: string): void {
  if (subject.length > 256 || !subject.split('.').every((part) => token.test(part))) throw new TypeError(`bus: invalid subject ${JSON.stringify(subject)}`);
}

export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.');
  const have = subject.split('.');
  for (let index = 0; index < want.length; index += 1) {
    const part = want[index];
    if (part === '>') return have.length > index;
    if (index >= have.length || (part !== '*' && part !== have[index])) return false;
  }
  return want.length === have.length;
}

/** The default bus: in this process only. Handlers run after the publish returns; one that throws does not stop the others. */
export class InProcessBus implements Bus {
  readonly #subscriptions = new Set<{ pattern: string; handler: (subject: string, payload: unknown) => void }>();

  async publish(subject: string, payload: unknown): Promise<void> {
    assertSubject(subject);
    for (const subscription of this.#subscriptions) {
      if (!subjectMatches(subscription.pattern, subject)) continue;
      queueMicrotask(() => {
        try {
          subscription.handler(subject, payload);
        } catch {
          // A subscriber's failure is its own; the publisher and the other subscribers go on.
        }
      });
    }
  }

  subscribe(pattern: string, handler: (subject: string, payload: unknown) => void): () => void {
    const subscription = { pattern, handler };
    this.#subscriptions.add(subscription);
    return () => this.#subscriptions.delete(subscription);
  }
}
