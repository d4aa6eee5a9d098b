/**
 * What an agent may do on the bus, and how it gets there. Shared by the bus implementations (NATS user
 * permissions, the in-process bus's own checks) and the agents module (pairing hands out the access,
 * revocation takes it away). Subjects are tenant-scoped: `bulwark.t.<tenantId>.agents.<agentId>.<kind>`.
 */
export interface BusPermissions {
  /** Subject patterns (NATS syntax: `*` one token, `>` the rest) the holder may publish to. */
  publish: readonly string[];
  /** Subject patterns the holder may subscribe to. */
  subscribe: readonly string[];
}

/** The subjects of one agent: it reports on its own subjects, and hears commands and replies addressed to it. */
export function agentSubjects(tenantId: string, agentId: string) {
  const root = `bulwark.t.${tenantId}.agents.${agentId}`;
  return {
    root,
    heartbeat: `${root}.heartbeat`,
    health: `${root}.health`,
    stats: `${root}.stats`,
    commands: `${root}.cmd`,
    /** The inbox prefix the agent's requests use for replies (NATS `inboxPrefix`). */
    inbox: `_INBOX.${tenantId}.${agentId}`,
  };
}

export function agentPermissions(tenantId: string, agentId: string): BusPermissions {
  const subjects = agentSubjects(tenantId, agentId);
  return { publish: [`${subjects.root}.>`], subscribe: [`${subjects.commands}.>`, `${subjects.inbox}.>`] };
}

/** How a paired agent reaches the bus: NATS credentials of its own, or its agent token against Bulwark's HTTP bus gateway. */
export type AgentBusCredentials = { kind: 'nats'; servers: string[]; creds: string; userKey: string } | { kind: 'http' };

/**
 * Issues and revokes agents' bus access. The NATS implementation mints a user JWT whose permissions are
 * `agentPermissions` and revokes it on the account (connections closed at once); the in-process bus needs
 * nothing issued (the gateway checks the agent token and the same permissions on every message).
 */
export interface AgentBusAccess {
  issue(tenantId: string, agentId: string): Promise<AgentBusCredentials>;
  /** `userKey`: the NATS user public key issued at pairing (null for the in-process bus). */
  revoke(tenantId: string, agentId: string, userKey: string | null): Promise<void>;
}
