import { randomUUID } from 'node:crypto'
import { isScope, sortedScopes, uncoveredScopes } from '../auth/scopes.ts'
import { writeAudit } from '../audit/service.ts'
import type { NotifyBus, PairDecision } from '../db/bus.ts'
import { lockDevice } from '../db/locks.ts'
import type { Database } from '../db/database.ts'
import { findPairedDevice, type PairedDevice } from '../devices/service.ts'
import { Errors, withDetails } from '../errors.ts'
import type { PairingRequest, Prisma } from '../generated/prisma/client.ts'
import { decodeCursor, encodeCursor, type Page } from '../schemas/paging.ts'
import { isUuid } from '../schemas/ids.ts'
import type { Policy, PolicyService, Verdict } from '../policies/service.ts'
import { PAIRING_REASONS, REQUEST_STATES, type PairingReason, type PairingRequestView, type RequestState } from '../views.ts'

export { PAIRING_REASONS, REQUEST_STATES, type PairingReason, type PairingRequestView, type RequestState }


/** What one connect asked for, normalized. */
export interface PairingAsk {
  deviceId: string
  publicKey: string
  role: string
  scopes: string[]
  platform: string
  deviceFamily: string
  clientId: string
  clientMode: string
  displayName?: string
}


export interface ApprovalResult {
  requestId: string
  device: PairedDevice
}

/** A policy as a refusal names it. */
export interface PolicyRef {
  id: string
  name: string
}

/**
 * What became of a refused connect's ask once the approval policies were
 * tried: admitted by a rule, rejected by one, or waiting for an admin (with
 * what a rule granted already, or a disabled rule that would have matched).
 */
export type PairingRequestOutcome =
  | { kind: 'pending', request: PairingRequestView }
  | { kind: 'covered', roleScopes: string[] }

export type PairingDecision =
  /** `policy` null: approved by someone else after this connect looked and before it asked. */
  | { kind: 'approved', policy: PolicyRef | null, requestId: string | null, roleScopes: string[] }
  | { kind: 'rejected', policy: PolicyRef, reason: PairingReason, requestId: string, approvedScopes: string[] }
  | {
      kind: 'pending'
      reason: PairingReason
      request: PairingRequestView
      /** Set when a rule approved part of the ask: what it granted, and the role's scopes now. */
      partial?: { policy: PolicyRef, granted: string[], approvedScopes: string[] }
      /** No enabled rule matched, but this disabled one would have. */
      disabledMatch?: PolicyRef & { action: Policy['action'] }
    }

export interface ListQuery {
  state: RequestState | 'all'
  limit: number
  cursor?: string
}


type Tx = Prisma.TransactionClient


export function toRequestView (row: PairingRequest, now = Date.now()): PairingRequestView {
  const expired = row.state === 'pending' && row.expiresAt.getTime() <= now
  return {
    requestId: row.id,
    deviceId: row.deviceId,
    publicKey: row.publicKey,
    platform: row.platform,
    deviceFamily: row.deviceFamily,
    clientId: row.clientId,
    clientMode: row.clientMode,
    ...(row.displayName !== null && { displayName: row.displayName }),
    role: row.role,
    roles: row.roles,
    scopes: row.scopes,
    approvedScopes: row.approvedScopes,
    reason: row.reason,
    isRepair: row.isRepair,
    ts: row.createdAt.getTime(),
    state: expired ? 'expired' : row.state as RequestState,
    expiresAtMs: row.expiresAt.getTime(),
    ...(row.resolvedAt !== null && { resolvedAtMs: row.resolvedAt.getTime() }),
    ...(row.state === 'approved' && { grantedScopes: row.grantedScopes })
  }
}

/** Union of two lists, in first-seen order. */
function union (first: readonly string[], second: readonly string[]): string[] {
  return [...new Set([...first, ...second])]
}

function isSubset (items: readonly string[], of: readonly string[]): boolean {
  return items.every((item) => of.includes(item))
}


interface Resolution { requestId: string, deviceId: string, decision: PairDecision }

/** What the device holds for the asked role, read under the device lock. */
interface DeviceStanding {
  /** The role's approved scopes; null: the device is not paired for the role. */
  roleScopes: string[] | null
  /** The device is paired for some role already (the request is a repair). */
  isRepair: boolean
  metadataMatches: boolean
}

async function deviceStanding (tx: Prisma.TransactionClient, ask: PairingAsk): Promise<DeviceStanding> {
  const device = await tx.device.findUnique({ where: { id: ask.deviceId }, include: { roles: true } })
  return {
    roleScopes: device?.roles.find((r) => r.role === ask.role)?.scopes ?? null,
    isRepair: (device?.roles.length ?? 0) > 0,
    metadataMatches: device != null && device.platform === ask.platform && device.deviceFamily === ask.deviceFamily
  }
}

/** The role's approved scopes when they already cover `scopes` (metadata included); null otherwise. */
function coveringScopes (standing: DeviceStanding, scopes: readonly string[]): string[] | null {
  const { roleScopes } = standing
  if (roleScopes === null || !standing.metadataMatches) return null
  return uncoveredScopes(scopes, roleScopes).length === 0 ? roleScopes : null
}

export class PairingService {
  #expiryTimer: NodeJS.Timeout | undefined
  #expiryAt = Infinity
  #stopped = false

  constructor (
    private readonly db: Database,
    private readonly bus: NotifyBus,
    private readonly ttlMs: number,
    private readonly onError: (err: Error) => void,
    /** The approval policies tried before a request is left pending. */
    readonly policies: PolicyService
  ) {}

  /**
   * Records the pending request for a refused connect: reuses the pending one
   * when it already covers the ask, supersedes it with the union otherwise.
   * `covered`: an approval landed after the connect looked; nothing to ask.
   */
  async requestPairing (ask: PairingAsk, reason: PairingReason): Promise<PairingRequestOutcome> {
    const resolutions: Resolution[] = []
    let created = false
    const row = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, ask.deviceId)
      const standing = await deviceStanding(tx, ask)
      const covered = coveringScopes(standing, ask.scopes)
      if (covered !== null) return { roleScopes: covered }
      let pending = await tx.pairingRequest.findFirst({ where: { deviceId: ask.deviceId, state: 'pending' } })
      if (pending !== null && pending.expiresAt.getTime() <= Date.now()) {
        await markExpired(tx, pending)
        resolutions.push({ requestId: pending.id, deviceId: pending.deviceId, decision: 'expired' })
        pending = null
      }
      if (pending !== null && coversAsk(pending, ask)) return pending
      const now = new Date()
      const nextId = randomUUID()
      // The old request leaves pending before the new one enters it: at most one is pending per device (unique index).
      if (pending !== null) {
        await tx.pairingRequest.update({
          where: { id: pending.id },
          data: { state: 'superseded', resolvedAt: now, resolvedBy: 'system', supersededBy: nextId }
        })
        await writeAudit(tx, { actor: 'system', action: 'pairing.superseded', deviceId: ask.deviceId, requestId: pending.id, details: { supersededBy: nextId } })
        resolutions.push({ requestId: pending.id, deviceId: pending.deviceId, decision: 'superseded' })
      }
      const next = await tx.pairingRequest.create({
        data: {
          ...requestRow(nextId, ask, reason, now, this.ttlMs),
          roles: union(pending?.roles ?? [], [ask.role]),
          scopes: union(pending?.scopes ?? [], ask.scopes),
          isRepair: standing.isRepair,
          state: 'pending',
          approvedScopes: sortedScopes(standing.roleScopes ?? []),
          grantedScopes: []
        }
      })
      await writeAudit(tx, {
        actor: ask.deviceId,
        action: 'pairing.requested',
        deviceId: ask.deviceId,
        requestId: next.id,
        details: { reason, role: ask.role, scopes: next.scopes, roles: next.roles }
      })
      created = true
      return next
    })
    await this.#announce(resolutions)
    if ('roleScopes' in row) return { kind: 'covered', roleScopes: row.roleScopes }
    if (created) {
      await this.bus.publish({ kind: 'pair.requested', requestId: row.id })
      this.scheduleExpiry(row.expiresAt.getTime())
    }
    return { kind: 'pending', request: toRequestView(row) }
  }

  async get (requestId: string): Promise<PairingRequestView> {
    if (!isUuid(requestId)) throw new Errors.PairingRequestNotFound(requestId)
    const row = await this.db.prisma.pairingRequest.findUnique({ where: { id: requestId } })
    if (row === null) throw new Errors.PairingRequestNotFound(requestId)
    return toRequestView(row)
  }

  async list (query: ListQuery): Promise<Page<PairingRequestView>> {
    const now = new Date()
    const where: Prisma.PairingRequestWhereInput = stateFilter(query.state, now)
    const cursor = decodeCursor(query.cursor)
    if (cursor !== null) {
      where.AND = [{
        OR: [
          { createdAt: { lt: new Date(cursor.atMs) } },
          { createdAt: new Date(cursor.atMs), id: { lt: cursor.id } }
        ]
      }]
    }
    const rows = await this.db.prisma.pairingRequest.findMany({
      where,
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: query.limit + 1
    })
    const items = rows.slice(0, query.limit)
    const last = items.at(-1)
    return {
      items: items.map((row) => toRequestView(row, now.getTime())),
      nextCursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.createdAt.getTime(), last.id) : null
    }
  }

  /**
   * Approves a pending request: pairs every role it names and adds the
   * approved scopes (all requested, or the given non-empty subset) to its role.
   * Of two racing decisions exactly one wins; the other gets "not pending".
   */
  async approve (requestId: string, scopes: string[] | undefined, actor: string): Promise<ApprovalResult> {
    const request = await this.#pendingRequest(requestId)
    const granted = chooseScopes(request, scopes)
    const device = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, request.deviceId)
      const now = new Date()
      await claimPending(tx, requestId, { state: 'approved', resolvedAt: now, resolvedBy: actor, grantedScopes: granted })
      return await applyApproval(tx, request, granted, actor, now)
    })
    await this.#announce([{ requestId, deviceId: request.deviceId, decision: 'approved' }])
    return { requestId, device }
  }

  async reject (requestId: string, actor: string): Promise<{ requestId: string, deviceId: string }> {
    const request = await this.#pendingRequest(requestId)
    await this.db.prisma.$transaction(async (tx) => {
      await claimPending(tx, requestId, { state: 'rejected', resolvedAt: new Date(), resolvedBy: actor })
      await writeAudit(tx, { actor, action: 'pairing.rejected', deviceId: request.deviceId, requestId, details: {} })
    })
    await this.#announce([{ requestId, deviceId: request.deviceId, decision: 'rejected' }])
    return { requestId, deviceId: request.deviceId }
  }

  /**
   * A connect was refused for `reason`: the enabled approval policies are
   * tried first (API.md). A rule that approves pairs the device at once (a
   * decided request, actor `policy:<id>`); asked scopes it leaves out wait
   * as a scope-upgrade request. A rule that rejects records a rejected
   * request and leaves nothing pending. Without a rule, the ask becomes (or
   * joins) the device's pending request as before.
   */
  async decide (ask: PairingAsk, reason: PairingReason): Promise<PairingDecision> {
    const { verdict, disabledMatch } = await this.policies.decide({
      role: ask.role,
      scopes: ask.scopes,
      reason,
      clientId: ask.clientId,
      clientMode: ask.clientMode,
      platform: ask.platform,
      deviceId: ask.deviceId
    })
    if (verdict === null) {
      const outcome = await this.requestPairing(ask, reason)
      if (outcome.kind === 'covered') return { kind: 'approved', policy: null, requestId: null, roleScopes: outcome.roleScopes }
      const { request } = outcome
      return { kind: 'pending', reason, request, ...(disabledMatch !== null && { disabledMatch: { ...policyRef(disabledMatch), action: disabledMatch.action } }) }
    }
    const policy = policyRef(verdict.policy)
    if (verdict.action === 'reject') {
      const { requestId, approvedScopes } = await this.#rejectByPolicy(ask, reason, verdict.policy)
      return { kind: 'rejected', policy, reason, requestId, approvedScopes }
    }
    const approval = await this.#approveByPolicy(ask, reason, verdict)
    if (uncoveredScopes(ask.scopes, approval.roleScopes).length === 0) {
      return { kind: 'approved', policy, requestId: approval.requestId, roleScopes: approval.roleScopes }
    }
    const outcome = await this.requestPairing(ask, 'scope-upgrade')
    if (outcome.kind === 'covered') return { kind: 'approved', policy: null, requestId: null, roleScopes: outcome.roleScopes }
    return { kind: 'pending', reason: 'scope-upgrade', request: outcome.request, partial: { policy, granted: verdict.granted, approvedScopes: sortedScopes(approval.roleScopes) } }
  }

  /**
   * Approves this ask (narrowed to the rule's grant) under the device lock,
   * so two instances deciding the same device approve once: the second finds
   * the grant already in place and records nothing.
   */
  async #approveByPolicy (ask: PairingAsk, reason: PairingReason, verdict: Verdict): Promise<{ requestId: string | null, roleScopes: string[] }> {
    const actor = `policy:${verdict.policy.id}`
    const granted = sortedScopes(verdict.granted)
    const result = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, ask.deviceId)
      const standing = await deviceStanding(tx, ask)
      const upToDate = coveringScopes(standing, granted)
      if (upToDate !== null) return { requestId: null, roleScopes: upToDate }
      const now = new Date()
      const request = await tx.pairingRequest.create({
        data: this.#decidedRequestRow(ask, reason, now, standing, { state: 'approved', actor, grantedScopes: granted })
      })
      const paired = await applyApproval(tx, request, granted, actor, now, { reason, policyId: verdict.policy.id, policyName: verdict.policy.name })
      return { requestId: request.id, roleScopes: paired.roleScopes[ask.role] ?? granted }
    })
    if (result.requestId !== null) await this.#announce([{ requestId: result.requestId, deviceId: ask.deviceId, decision: 'approved' }])
    return result
  }

  /** Records this ask as a request the rule rejected at once: nothing is left pending for it. */
  async #rejectByPolicy (ask: PairingAsk, reason: PairingReason, policy: Policy): Promise<{ requestId: string, approvedScopes: string[] }> {
    const actor = `policy:${policy.id}`
    const result = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, ask.deviceId)
      const standing = await deviceStanding(tx, ask)
      const now = new Date()
      const request = await tx.pairingRequest.create({
        data: this.#decidedRequestRow(ask, reason, now, standing, { state: 'rejected', actor, grantedScopes: [] })
      })
      const approvedScopes = request.approvedScopes
      await writeAudit(tx, {
        actor,
        action: 'pairing.rejected',
        deviceId: ask.deviceId,
        requestId: request.id,
        details: { reason, role: ask.role, scopes: ask.scopes, policyId: policy.id, policyName: policy.name }
      })
      return { requestId: request.id, approvedScopes }
    })
    await this.#announce([{ requestId: result.requestId, deviceId: ask.deviceId, decision: 'rejected' }])
    return result
  }
  /** The row of a request a policy decided as the connect arrived: created approved or rejected, never pending. */
  #decidedRequestRow (ask: PairingAsk, reason: PairingReason, now: Date, standing: DeviceStanding, decided: { state: 'approved' | 'rejected', actor: string, grantedScopes: string[] }) {
    return {
      ...requestRow(randomUUID(), ask, reason, now, this.ttlMs),
      roles: [ask.role],
      scopes: ask.scopes,
      isRepair: standing.isRepair,
      state: decided.state,
      resolvedAt: now,
      resolvedBy: decided.actor,
      approvedScopes: sortedScopes(standing.roleScopes ?? []),
      grantedScopes: decided.grantedScopes
    } satisfies Prisma.PairingRequestUncheckedCreateInput
  }


  /** Marks every pending request past its expiry as expired, once across instances. */
  async expireDue (): Promise<number> {
    const expired = await this.db.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<Array<{ id: string, device_id: string }>>`
        UPDATE pairing_requests SET state = 'expired', resolved_at = now(), resolved_by = 'system'
        WHERE id IN (SELECT id FROM pairing_requests WHERE state = 'pending' AND expires_at <= now()
                     ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED)
        RETURNING id::text, device_id`
      for (const row of rows) {
        await writeAudit(tx, { actor: 'system', action: 'pairing.expired', deviceId: row.device_id, requestId: row.id, details: {} })
      }
      return rows
    })
    await this.#announce(expired.map((row) => ({ requestId: row.id, deviceId: row.device_id, decision: 'expired' as const })))
    return expired.length
  }

  /** Starts the expiry timer from the earliest pending request. */
  async start (): Promise<void> {
    this.#stopped = false
    await this.#sweep()
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#expiryTimer)
    this.#expiryTimer = undefined
  }

  /** Arms one timer for the earliest known expiry (no polling). */
  scheduleExpiry (atMs: number): void {
    if (this.#stopped || atMs >= this.#expiryAt) return
    clearTimeout(this.#expiryTimer)
    this.#expiryAt = atMs
    this.#expiryTimer = setTimeout(() => { void this.#sweep() }, Math.max(0, atMs - Date.now()) + 5).unref()
  }

  async #sweep (): Promise<void> {
    this.#expiryAt = Infinity
    this.#expiryTimer = undefined
    try {
      while (await this.expireDue() === 500);
      const next = await this.db.prisma.pairingRequest.findFirst({ where: { state: 'pending' }, orderBy: { expiresAt: 'asc' }, select: { expiresAt: true } })
      if (next !== null) this.scheduleExpiry(next.expiresAt.getTime())
    } catch (err) {
      this.onError(err as Error)
      this.scheduleExpiry(Date.now() + 5000)
    }
  }

  async #pendingRequest (requestId: string): Promise<PairingRequest> {
    if (!isUuid(requestId)) throw new Errors.PairingRequestNotFound(requestId)
    const request = await this.db.prisma.pairingRequest.findUnique({ where: { id: requestId } })
    if (request === null) throw new Errors.PairingRequestNotFound(requestId)
    if (request.state === 'pending' && request.expiresAt.getTime() <= Date.now()) {
      await this.expireDue()
      throw notPending(requestId, 'expired')
    }
    if (request.state !== 'pending') throw notPending(requestId, request.state)
    return request
  }

  async #announce (resolutions: Resolution[]): Promise<void> {
    const ts = Date.now()
    for (const r of resolutions) {
      await this.bus.publish({ kind: 'pair.resolved', requestId: r.requestId, deviceId: r.deviceId, decision: r.decision, ts })
    }
  }
}

function policyRef (policy: Policy): PolicyRef {
  return { id: policy.id, name: policy.name }
}

/** The fields of a new request row that come from the ask. */
function requestRow (id: string, ask: PairingAsk, reason: PairingReason, now: Date, ttlMs: number) {
  return {
    id,
    deviceId: ask.deviceId,
    publicKey: ask.publicKey,
    platform: ask.platform,
    deviceFamily: ask.deviceFamily,
    clientId: ask.clientId,
    clientMode: ask.clientMode,
    displayName: ask.displayName ?? null,
    role: ask.role,
    reason,
    createdAt: now,
    expiresAt: new Date(now.getTime() + ttlMs)
  } satisfies Partial<Prisma.PairingRequestUncheckedCreateInput>
}

/**
 * The approval itself, for an admin's decision and a policy's alike: pairs
 * every role of the request, adds the granted scopes to its role, records
 * its metadata and writes the `pairing.approved` row.
 */
async function applyApproval (tx: Tx, request: PairingRequest, granted: string[], actor: string, now: Date, extra: Prisma.InputJsonObject = {}): Promise<PairedDevice> {
  await upsertDevice(tx, request, now)
  for (const role of request.roles) {
    const existing = await tx.deviceRole.findUnique({ where: { deviceId_role: { deviceId: request.deviceId, role } } })
    const scopesForRole = sortedScopes([...(existing?.scopes ?? []), ...(role === request.role ? granted : [])])
    await tx.deviceRole.upsert({
      where: { deviceId_role: { deviceId: request.deviceId, role } },
      create: { deviceId: request.deviceId, role, scopes: scopesForRole, approvedAt: now },
      update: { scopes: scopesForRole, ...(role === request.role && { approvedAt: now }) }
    })
    await tx.deviceToken.updateMany({ where: { deviceId: request.deviceId, role }, data: { scopes: scopesForRole } })
  }
  await writeAudit(tx, {
    actor,
    action: 'pairing.approved',
    deviceId: request.deviceId,
    requestId: request.id,
    details: { role: request.role, roles: request.roles, requestedScopes: request.scopes, grantedScopes: granted, ...extra }
  })
  const paired = await findPairedDevice(tx, request.deviceId)
  if (paired === null) throw new Error(`device ${request.deviceId} vanished during approval`)
  return paired
}

function notPending (requestId: string, state: string): Error {
  return withDetails(new Errors.PairingRequestNotPending(requestId, state), { requestId, state })
}

function coversAsk (pending: PairingRequest, ask: PairingAsk): boolean {
  return pending.roles.includes(ask.role) &&
    isSubset(ask.scopes, pending.scopes) &&
    pending.platform === ask.platform &&
    pending.deviceFamily === ask.deviceFamily
}

async function markExpired (tx: Tx, request: PairingRequest): Promise<void> {
  await tx.pairingRequest.update({ where: { id: request.id }, data: { state: 'expired', resolvedAt: new Date(), resolvedBy: 'system' } })
  await writeAudit(tx, { actor: 'system', action: 'pairing.expired', deviceId: request.deviceId, requestId: request.id, details: {} })
}

/** Moves the request out of pending, or fails when another decision got there first. */
async function claimPending (tx: Tx, requestId: string, data: Prisma.PairingRequestUpdateManyMutationInput): Promise<void> {
  const { count } = await tx.pairingRequest.updateMany({
    where: { id: requestId, state: 'pending', expiresAt: { gt: new Date() } },
    data
  })
  if (count === 1) return
  const now = await tx.pairingRequest.findUnique({ where: { id: requestId }, select: { state: true } })
  throw notPending(requestId, now?.state === 'pending' ? 'expired' : now?.state ?? 'gone')
}

/** Validates an approver's narrowing: a non-empty subset of the requested scopes. */
function chooseScopes (request: PairingRequest, scopes: string[] | undefined): string[] {
  if (scopes === undefined) return sortedScopes(request.scopes)
  const unknown = scopes.find((scope) => !isScope(scope))
  if (unknown !== undefined) throw withDetails(new Errors.InvalidScope(unknown), { scope: unknown })
  const extra = scopes.filter((scope) => !request.scopes.includes(scope))
  if (scopes.length === 0 || extra.length > 0) {
    throw withDetails(new Errors.ScopesNotRequested(extra.join(',') || '(none given)'), { requestedScopes: request.scopes })
  }
  return sortedScopes(scopes)
}

async function upsertDevice (tx: Tx, request: PairingRequest, now: Date): Promise<void> {
  const metadata = {
    platform: request.platform,
    deviceFamily: request.deviceFamily,
    displayName: request.displayName,
    clientId: request.clientId,
    clientMode: request.clientMode,
    approvedAt: now
  }
  await tx.device.upsert({
    where: { id: request.deviceId },
    create: { id: request.deviceId, publicKey: request.publicKey, createdAt: now, ...metadata },
    update: metadata
  })
}

function stateFilter (state: RequestState | 'all', now: Date): Prisma.PairingRequestWhereInput {
  switch (state) {
    case 'all': return {}
    case 'pending': return { state: 'pending', expiresAt: { gt: now } }
    case 'expired': return { OR: [{ state: 'expired' }, { state: 'pending', expiresAt: { lte: now } }] }
    default: return { state }
  }
}
