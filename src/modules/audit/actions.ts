/**
 * Every audit action, `resource.verb`, in one closed list (STYLE.md rule 8): a new kind of event is a
 * deliberate addition here, and a query can name only what exists. Failures are recorded with the same
 * action and `outcome: failure` (or `denied` for authorization refusals).
 */
export const auditActions = [
  // Platform
  'tenant.create',
  'tenant.update',
  // Offboarding: the request (or its refusal by a legal hold), its cancellation, and the purge with its proof
  'tenant.offboarding.request',
  'tenant.offboarding.cancel',
  'tenant.offboard',
  'operator.setup',
  'operator.create',
  'operator.update',
  'operator.delete',
  'operator.password.set',
  'operator.lockout.clear',
  'root-key.rotate',
  'limits.update',
  'service.register',
  'service.retire',
  'backup.create',
  'backup.verify',
  'backup.restore',
  'backup.prune',
  'tenant.export',
  // Authentication (in the realm's chain: the tenant's, or the platform's for operators)
  'auth.login',
  'auth.lockout',
  'auth.refresh',
  'auth.refresh.reuse',
  'auth.logout',
  'auth.password.change',
  'auth.mfa',
  'auth.sso',
  // Tenant data and administration
  'record.create',
  'record.replace',
  'record.delete',
  'api-key.create',
  'api-key.revoke',
  'user.create',
  'user.import',
  'user.update',
  'user.delete',
  'user.password.set',
  'user.lockout.clear',
  'user.roles.set',
  'password-policy.update',
  'mfa-policy.update',
  'sso-policy.update',
  'mfa.factor.add',
  'mfa.factor.activate',
  'mfa.factor.remove',
  'mfa.reset',
  'mfa.recovery-codes.generate',
  'sso.connection.create',
  'sso.connection.update',
  'sso.connection.delete',
  'sso.identity.link',
  'domain.claim',
  'domain.verify',
  'domain.update',
  'domain.delete',
  'role.create',
  'role.update',
  'role.delete',
  'support-grant.create',
  'support-grant.revoke',
  'support-grant.use',
  'keys.settings.update',
  'keys.rotate',
  'keys.reencrypt',
  'keys.trim',
  'keys.customer-key.set',
  'keys.customer-key.remove',
  'crypto.encrypt',
  'crypto.decrypt',
  'crypto.rewrap',
  'secret.put',
  'secret.delete',
  // A service's read of its sealed copy (actor: the service)
  'secret.read',
  // Agents: pairing, revocation, certificate renewal, and what their reports change (actor: the agent, or the system's stale sweep)
  'pairing-code.create',
  'pairing-code.delete',
  'agent.pair',
  'agent.revoke',
  'agent.certificate.issue',
  'agent.health.change',
  'agent.stale',
  // Privacy: legal holds, a data subject's copy, erasure (done, or deferred by a hold)
  'legal-hold.create',
  'legal-hold.release',
  'privacy.export',
  'privacy.erase',
  'privacy.erase.deferred',
  // Authorization refusals of authenticated callers
  'access.denied',
  // A tenant (or operator) throttled by a rate limit: sampled, at most one event per bucket per minute
  'limit.exceeded',
  // The audit trail itself
  'audit.verify',
  'audit.export',
  'audit.settings.update',
  'audit.prune',
  'audit.subject.forget',
] as const;

export type AuditAction = (typeof auditActions)[number];

export function isAuditAction(value: string): value is AuditAction {
  return (auditActions as readonly string[]).includes(value);
}
