import { randomUUID } from 'node:crypto'
import { normalizeMetadata } from '../auth/device-identity.ts'
import { sortedScopes } from '../auth/scopes.ts'
import { writeAudit } from '../audit/service.ts'
import type { Database } from '../db/database.ts'
import { assertReach, type Actor } from '../devices/admin.ts'
import { Errors, withDetails } from '../errors.ts'
import { Prisma, type ApprovalPolicy } from '../generated/prisma/client.ts'
import type { PairingReason } from '../pairing/service.ts'
import type { Page } from '../schemas/paging.ts'
import { isUuid } from '../schemas/ids.ts'
import { MATCH_FIELDS, type PolicyMatch } from '../views.ts'

export const POLICY_ACTIONS = ['approve', 'reject'] as const
export type PolicyAction = (typeof POLICY_ACTIONS)[number]

/** Scopes a rule may grant only with `allowPrivileged: true` (and a creator who holds them). */
export const PRIVILEGED_SCOPES = ['operator.admin', 'operator.pairing'] as const

export { MATCH_FIELDS, type PolicyMatch }

export interface Policy {
  id: string
  name: string
  priority: number
  enabled: boolean
  match: PolicyMatch
  action: PolicyAction
  /** Set: an approve rule grants only the asked scopes listed here. */
  scopes?: string[]
  allowPrivileged: boolean
  createdBy: string
  createdAtMs: number
  updatedAtMs: number
}

export interface PolicyInput {
  name: string
  priority?: number
  enabled?: boolean
  match?: PolicyMatch
  action: PolicyAction
  scopes?: string[]
  allowPrivileged?: boolean
}

/** A PATCH: fields given replace the stored ones (`match` as a whole); `scopes: null` stops narrowing. */
export interface PolicyPatch {
  name?: string
  priority?: number
  enabled?: boolean
  match?: PolicyMatch
  action?: PolicyAction
  scopes?: string[] | null
  allowPrivileged?: boolean
}

/** What a rule judges: one connect's ask (or a would-be one, for `evaluate`). */
export interface PolicyAsk {
  role: string
  scopes: string[]
  reason: PairingReason
  clientId?: string
  clientMode?: string
  /** Compared trimmed and lower-cased. */
  platform?: string
  deviceId?: string
}

/** The first rule that holds, and what it does to the ask. */
export interface Verdict {
  policy: Policy
  action: PolicyAction
  /** approve: the asked scopes the rule grants, in the order asked. */
  granted: string[]
  /** approve: the asked scopes it leaves out (they wait for an admin as a scope-upgrade). */
  leftOut: string[]
}

export interface Evaluation {
  policyId: string | null
  policyName?: string
  action: PolicyAction | 'none'
  scopes?: string[]
  leftOutScopes?: string[]
}

export const DEFAULT_PRIORITY = 100

/** The stored order in which rules are tried: priority, then age (then id, for a total order). */
const EVALUATION_ORDER: Prisma.ApprovalPolicyOrderByWithRelationInput[] = [{ priority: 'asc' }, { createdAt: 'asc' }, { id: 'asc' }]

function stringList (value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : undefined
}

/** The stored JSON as a PolicyMatch, keeping only the known fields. */
function toMatch (json: Prisma.JsonValue): PolicyMatch {
  const match: PolicyMatch = {}
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return match
  for (const field of MATCH_FIELDS) {
    const list = stringList(json[field])
    if (list !== undefined) match[field] = list
  }
  return match
}

export function toPolicy (row: ApprovalPolicy): Policy {
  const scopes = stringList(row.scopes)
  return {
    id: row.id,
    name: row.name,
    priority: row.priority,
    enabled: row.enabled,
    match: toMatch(row.match),
    action: row.action === 'reject' ? 'reject' : 'approve',
    ...(scopes !== undefined && { scopes }),
    allowPrivileged: row.allowPrivileged,
    createdBy: row.createdBy,
    createdAtMs: row.createdAt.getTime(),
    updatedAtMs: row.updatedAt.getTime()
  }
}

/** Platforms are compared as the handshake signs them: trimmed and lower-cased; lists de-duplicated. */
function normalizeMatch (match: PolicyMatch): PolicyMatch {
  const out: PolicyMatch = {}
  for (const field of MATCH_FIELDS) {
    const list = match[field]
    if (list === undefined) continue
    out[field] = [...new Set(field === 'platforms' ? list.map((p) => normalizeMetadata(p)) : list)]
  }
  return out
}

/** The privileged scopes a rule could grant (API.md): named by scopes or scopesWithin, or every one when neither limits it. */
export function privilegedReach (policy: Pick<Policy, 'action' | 'scopes' | 'match'>): string[] {
  if (policy.action !== 'approve') return []
  const { scopes } = policy
  const within = policy.match.scopesWithin
  if (scopes === undefined && within === undefined) return [...PRIVILEGED_SCOPES]
  const named = new Set([...(scopes ?? []), ...(within ?? [])])
  return PRIVILEGED_SCOPES.filter((scope) => named.has(scope))
}

/** Whether every field the rule gives holds for the ask. */
export function policyMatches (policy: Pick<Policy, 'match'>, ask: PolicyAsk): boolean {
  const { match } = policy
  const holds = (list: string[] | undefined, value: string | undefined): boolean => list === undefined || (value !== undefined && list.includes(value))
  return holds(match.roles, ask.role) &&
    holds(match.clientIds, ask.clientId) &&
    holds(match.clientModes, ask.clientMode) &&
    holds(match.platforms, ask.platform === undefined ? undefined : normalizeMetadata(ask.platform)) &&
    holds(match.reasons, ask.reason) &&
    holds(match.deviceIds, ask.deviceId) &&
    (match.scopesWithin === undefined || ask.scopes.every((scope) => match.scopesWithin?.includes(scope) === true))
}

/** What a matching rule does to the ask. A privileged scope is never granted without allowPrivileged, whatever is stored. */
export function verdictOf (policy: Policy, ask: PolicyAsk): Verdict {
  if (policy.action === 'reject') return { policy, action: 'reject', granted: [], leftOut: [] }
  const grantable = (scope: string): boolean =>
    (policy.scopes === undefined || policy.scopes.includes(scope)) &&
    (policy.allowPrivileged || !(PRIVILEGED_SCOPES as readonly string[]).includes(scope))
  const asked = [...new Set(ask.scopes)]
  return { policy, action: 'approve', granted: asked.filter(grantable), leftOut: asked.filter((scope) => !grantable(scope)) }
}

/** The first rule of `policies` (in evaluation order) that holds for the ask. */
export function judge (policies: readonly Policy[], ask: PolicyAsk): Verdict | null {
  const policy = policies.find((p) => policyMatches(p, ask))
  return policy === undefined ? null : verdictOf(policy, ask)
}

export function toEvaluation (verdict: Verdict | null): Evaluation {
  if (verdict === null) return { policyId: null, action: 'none' }
  return {
    policyId: verdict.policy.id,
    policyName: verdict.policy.name,
    action: verdict.action,
    ...(verdict.action === 'approve' && { scopes: verdict.granted, leftOutScopes: verdict.leftOut })
  }
}

/** Cursor of the policy list: [priority, createdAtMs, id] of the last item of a page. */
function encodePolicyCursor (policy: Policy): string {
  return Buffer.from(JSON.stringify([policy.priority, policy.createdAtMs, policy.id])).toString('base64url')
}

function decodePolicyCursor (cursor: string | undefined): { priority: number, atMs: number, id: string } | null {
  if (cursor === undefined || cursor === '') return null
  try {
    const [priority, atMs, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown[]
    if (Number.isSafeInteger(priority) && Number.isSafeInteger(atMs) && Math.abs(atMs as number) <= 8.64e15 && typeof id === 'string' && isUuid(id)) {
      return { priority: priority as number, atMs: atMs as number, id }
    }
  } catch {}
  throw withDetails(new Errors.InvalidCursor(), { cursor })
}

/**
 * Approval policies: stored rules, their admin changes (each with its audit
 * row), and the judgement the handshake and `evaluate` share.
 */
export class PolicyService {
  constructor (private readonly db: Database) {}

  /** Every rule in evaluation order (enabled ones only, unless asked). */
  async ordered (enabledOnly = true): Promise<Policy[]> {
    const rows = await this.db.prisma.approvalPolicy.findMany({ ...(enabledOnly && { where: { enabled: true } }), orderBy: EVALUATION_ORDER })
    return rows.map(toPolicy)
  }

  /**
   * The handshake's question: which enabled rule decides this ask, and the
   * first disabled rule that would have matched (for the remediation hint).
   */
  async decide (ask: PolicyAsk): Promise<{ verdict: Verdict | null, disabledMatch: Policy | null }> {
    const all = await this.ordered(false)
    const verdict = judge(all.filter((p) => p.enabled), ask)
    const disabledMatch = verdict === null ? all.find((p) => !p.enabled && policyMatches(p, ask)) ?? null : null
    return { verdict, disabledMatch }
  }

  /** The dry run: what the enabled rules would do with this ask. */
  async evaluate (ask: PolicyAsk): Promise<Evaluation> {
    return toEvaluation(judge(await this.ordered(), ask))
  }

  async list (query: { limit: number, cursor?: string }): Promise<Page<Policy>> {
    const cursor = decodePolicyCursor(query.cursor)
    const where: Prisma.ApprovalPolicyWhereInput = cursor === null
      ? {}
      : {
          OR: [
            { priority: { gt: cursor.priority } },
            { priority: cursor.priority, createdAt: { gt: new Date(cursor.atMs) } },
            { priority: cursor.priority, createdAt: new Date(cursor.atMs), id: { gt: cursor.id } }
          ]
        }
    const rows = await this.db.prisma.approvalPolicy.findMany({ where, orderBy: EVALUATION_ORDER, take: query.limit + 1 })
    const items = rows.slice(0, query.limit).map(toPolicy)
    const last = items.at(-1)
    return { items, nextCursor: rows.length > query.limit && last !== undefined ? encodePolicyCursor(last) : null }
  }

  async get (id: string): Promise<Policy> {
    if (!isUuid(id)) throw notFound(id)
    const row = await this.db.prisma.approvalPolicy.findUnique({ where: { id } })
    if (row === null) throw notFound(id)
    return toPolicy(row)
  }

  async create (input: PolicyInput, actor: Actor): Promise<Policy> {
    const candidate = {
      name: input.name,
      priority: input.priority ?? DEFAULT_PRIORITY,
      enabled: input.enabled ?? true,
      match: normalizeMatch(input.match ?? {}),
      action: input.action,
      ...(input.scopes !== undefined && { scopes: sortedScopes(input.scopes) }),
      allowPrivileged: input.allowPrivileged ?? false
    }
    checkPolicy(candidate, actor)
    const now = new Date()
    const row = await this.db.prisma.$transaction(async (tx) => {
      const created = await tx.approvalPolicy.create({
        data: {
          id: randomUUID(),
          name: candidate.name,
          priority: candidate.priority,
          enabled: candidate.enabled,
          match: toJson(candidate.match),
          action: candidate.action,
          scopes: candidate.scopes ?? Prisma.DbNull,
          allowPrivileged: candidate.allowPrivileged,
          createdBy: actor.id,
          createdAt: now,
          updatedAt: now
        }
      })
      await writeAudit(tx, { actor: actor.id, action: 'policy.created', details: { policyId: created.id, policy: auditSnapshot(toPolicy(created)) } })
      return created
    })
    return toPolicy(row)
  }

  async update (id: string, patch: PolicyPatch, actor: Actor): Promise<Policy> {
    if (!isUuid(id)) throw notFound(id)
    const row = await this.db.prisma.$transaction(async (tx) => {
      // Row lock: two concurrent PATCHes are checked one after the other against what the other wrote.
      const locked = await tx.$queryRaw<Array<{ id: string }>>`SELECT id::text FROM approval_policies WHERE id = ${id}::uuid FOR UPDATE`
      const current = locked.length === 0 ? null : await tx.approvalPolicy.findUnique({ where: { id } })
      if (current === null) throw notFound(id)
      const before = toPolicy(current)
      const scopes = patch.scopes === null ? undefined : patch.scopes === undefined ? before.scopes : sortedScopes(patch.scopes)
      const after = {
        name: patch.name ?? before.name,
        priority: patch.priority ?? before.priority,
        enabled: patch.enabled ?? before.enabled,
        match: patch.match === undefined ? before.match : normalizeMatch(patch.match),
        action: patch.action ?? before.action,
        ...(scopes !== undefined && { scopes }),
        allowPrivileged: patch.allowPrivileged ?? before.allowPrivileged
      }
      checkPolicy(after, actor)
      const updated = await tx.approvalPolicy.update({
        where: { id },
        data: {
          name: after.name,
          priority: after.priority,
          enabled: after.enabled,
          match: toJson(after.match),
          action: after.action,
          scopes: after.scopes ?? Prisma.DbNull,
          allowPrivileged: after.allowPrivileged,
          updatedAt: new Date()
        }
      })
      await writeAudit(tx, {
        actor: actor.id,
        action: 'policy.updated',
        details: { policyId: id, changed: Object.keys(patch).sort(), before: auditSnapshot(before), after: auditSnapshot(toPolicy(updated)) }
      })
      return updated
    })
    return toPolicy(row)
  }

  async remove (id: string, actor: Actor): Promise<{ id: string }> {
    if (!isUuid(id)) throw notFound(id)
    await this.db.prisma.$transaction(async (tx) => {
      const deleted = await tx.approvalPolicy.deleteMany({ where: { id } })
      if (deleted.count === 0) throw notFound(id)
      await writeAudit(tx, { actor: actor.id, action: 'policy.deleted', details: { policyId: id } })
    })
    return { id }
  }
}

function notFound (id: string): Error {
  return withDetails(new Errors.PolicyNotFound(id), { id })
}

function toJson (match: PolicyMatch): Prisma.InputJsonObject {
  return Object.fromEntries(Object.entries(match).filter(([, list]) => list !== undefined)) as Prisma.InputJsonObject
}

function auditSnapshot (policy: Policy): Prisma.InputJsonObject {
  return {
    name: policy.name,
    priority: policy.priority,
    enabled: policy.enabled,
    match: toJson(policy.match),
    action: policy.action,
    ...(policy.scopes !== undefined && { scopes: policy.scopes }),
    allowPrivileged: policy.allowPrivileged
  }
}

/**
 * The rules a stored policy must keep beyond its schema: `scopes` only on an
 * approve rule; a rule that could grant operator.admin or operator.pairing
 * says so (allowPrivileged) and is written by someone who holds them.
 */
function checkPolicy (policy: Pick<Policy, 'action' | 'scopes' | 'match' | 'allowPrivileged'>, actor: Actor): void {
  if (policy.action === 'reject' && policy.scopes !== undefined) {
    throw withDetails(new Errors.InvalidPolicy('body/scopes applies to approve rules only: a reject rule grants nothing (send "scopes": null to drop it)'), { field: 'scopes' })
  }
  const privileged = privilegedReach(policy)
  if (privileged.length === 0) return
  if (!policy.allowPrivileged) {
    throw withDetails(new Errors.PolicyNeedsAllowPrivileged(privileged.join(' and ')), { field: 'allowPrivileged', privilegedScopes: privileged })
  }
  assertReach(actor, privileged)
}
