import { createHash } from 'node:crypto';

/**
 * The hash chain of an audit scope (a tenant, or the platform). Each event's hash is
 *
 *   hash(n) = SHA-256( chainLabel || u64be(n) || hash(n-1) || id(n) || SHA-256(canonical body of event n) )
 *
 * with hash(0) = SHA-256(genesisLabel || scope). The body is everything stored with the event except its
 * seq, id and prev_hash: scope, time, actor, action, target, outcome, request and session ids, the detail,
 * the subject and the sealed personal data (its ciphertext bytes: erasing the subject's key later leaves the
 * chain intact). The database draws the id and computes the outer hash while it holds the head's lock
 * (bulwark_audit_append, migration 0009); the application computes the body digest beforehand and
 * recomputes everything when it verifies.
 */
export const chainLabel = Buffer.from('bulwark/audit/chain/v1', 'utf8');
const genesisLabel = Buffer.from('bulwark/audit/genesis/v1', 'utf8');

export function genesisHash(scope: string): Buffer {
  return createHash('sha256').update(genesisLabel).update(scope, 'utf8').digest();
}

export function linkHash(seq: number, prevHash: Buffer, id: string, bodyDigest: Buffer): Buffer {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  return createHash('sha256').update(chainLabel).update(seqBytes).update(prevHash).update(id, 'utf8').update(bodyDigest).digest();
}

/** What the body digest covers, in a fixed order. */
export interface EventBody {
  scope: string;
  occurredAt: Date;
  actorKind: string;
  actorId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  requestId: string | null;
  sessionId: string | null;
  detail: unknown;
  subject: string | null;
  pii: Buffer | null;
}

/**
 * JSON with object keys sorted at every level and no whitespace: the same value always gives the same text.
 * Only JSON data (the detail is built from strings, numbers, booleans, null, arrays and plain objects).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    // undefined, functions and symbols have no JSON form (the lib types say string; the runtime does not).
    const text = JSON.stringify(value) as string | undefined;
    if (text === undefined) throw new TypeError('canonicalJson: not JSON data');
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
  return `{${entries.join(',')}}`;
}

export function bodyDigest(body: EventBody): Buffer {
  const fields = [
    'bulwark/audit/event/v1',
    body.scope,
    body.occurredAt.toISOString(),
    body.actorKind,
    body.actorId,
    body.action,
    body.targetType,
    body.targetId,
    body.outcome,
    body.requestId,
    body.sessionId,
    canonicalJson(body.detail),
    body.subject,
    body.pii === null ? null : body.pii.toString('base64'),
  ];
  return createHash('sha256').update(JSON.stringify(fields), 'utf8').digest();
}

/** The bytes a checkpoint signature covers. */
export function checkpointPayload(scope: string, seq: number, hash: Buffer, kind: string, signedAt: Date): Buffer {
  return Buffer.from(JSON.stringify(['bulwark/audit/checkpoint/v1', scope, seq, hash.toString('hex'), kind, signedAt.toISOString()]), 'utf8');
}

export type BreakReason =
  | 'missing_event' // a sequence number has no event (deleted, or the tail was cut)
  | 'hash_mismatch' // the event's content does not give its stored hash (edited, or moved)
  | 'broken_link' // prev_hash is not the previous event's hash (reordered, or inserted)
  | 'bad_checkpoint' // a checkpoint's signature does not verify, or it names another hash than the event's
  | 'missing_boundary' // events were pruned without a signed retention checkpoint at the boundary
  | 'head_mismatch'; // the chain's head names another last event than the events end with (the tail was cut)

export interface ChainBreak {
  seq: number;
  reason: BreakReason;
}
