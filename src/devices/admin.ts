import { randomUUID } from 'node:crypto'
import { isRole, isScope, sortedScopes, uncoveredScopes } from '../auth/scopes.ts'
import { generateToken, hashToken } from '../auth/tokens.ts'
import { writeAudit, type AuditAction } from '../audit/service.ts'
import type { BusMessage, NotifyBus } from '../db/bus.ts'
import type { Database } from '../db/database.ts'
import { systemClock, type Clock } from '../clock.ts'
import { lockDevice } from '../db/locks.ts'
import { Errors, withDetails } from '../errors.ts'
import type { Prisma } from '../generated/prisma/client.ts'
import { decodeCursor, encodeCursor, type Page } from '../schemas/paging.ts'
import { isStorableText } from '../schemas/text.ts'
import { findPairedDevice, toPairedDevice, type PairedDevice } from './service.ts'
import type { RotatedToken } from '../views.ts'

type Tx = Prisma.TransactionClient

/** The latest time a JavaScript Date can hold. */
const MAX_DATE_MS = 8.64e15

/** Who makes a change, and which scopes they may hand out ('all' for an admin JWT). */
export interface Actor {
  id: string
  reach: 'all' | readonly string[]
}

export type { RotatedToken }

export interface DeviceListQuery {
  limit: number
  cursor?: string
  tokensExpiringWithinMs?: number
}

/** Nobody can grant a scope they do not hold themselves. */
export function assertReach (actor: Actor, scopes: readonly string[]): void {
  if (actor.reach === 'all') return
  const missing = uncoveredScopes(scopes, actor.reach)[0]
  if (missing !== undefined) {
    throw withDetails(new Errors.MissingScope(missing), { missingScope: missing, requiredScopes: [missing] })
  }
}

/** A device id that cannot be stored (U+0000, a lone surrogate) matches no device: 404 without asking the database, which would fail. */
function assertStorableId (deviceId: string): void {
  if (!isStorableText(deviceId)) throw new Errors.DeviceNotFound(deviceId)
}

export function validateRole (role: string): void {
  if (!isRole(role)) throw withDetails(new Errors.InvalidRole(role), { role })
}

export function validateScopes (scopes: readonly string[]): void {
  const unknown = scopes.find((scope) => !isScope(scope))
  if (unknown !== undefined) throw withDetails(new Errors.InvalidScope(unknown), { scope: unknown })
}

/**
 * Devices, their scope grants and their tokens. Every change commits with its
 * audit row, then tells every instance (through the bus) which live
 * connections it affects.
 */
export class DeviceService {
  constructor (private readonly db: Database, private readonly bus: NotifyBus, private readonly tokenTtlMs: number, private readonly clock: Clock = systemClock) {}

  async list (query: DeviceListQuery): Promise<Page<PairedDevice>> {
    const where: Prisma.DeviceWhereInput = {}
    if (query.tokensExpiringWithinMs !== undefined) {
      // Any window past the last representable time means "every expiring token", not an Invalid Date.
      const until = Math.min(this.clock.now() + query.tokensExpiringWithinMs, MAX_DATE_MS)
      where.tokens = { some: { revokedAt: null, expiresAt: { not: null, lte: new Date(until) } } }
    }
    const cursor = decodeCursor(query.cursor)
    if (cursor !== null) {
      where.OR = [{ createdAt: { lt: new Date(cursor.atMs) } }, { createdAt: new Date(cursor.atMs), id: { lt: cursor.id } }]
    }
    const rows = await this.db.prisma.device.findMany({
      where,
      include: { roles: true, tokens: true },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: query.limit + 1
    })
    const items = rows.slice(0, query.limit)
    const last = items.at(-1)
    return {
      items: items.map(toPairedDevice),
      nextCursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.createdAt.getTime(), last.id) : null
    }
  }

  async get (deviceId: string): Promise<PairedDevice> {
    assertStorableId(deviceId)
    const device = await findPairedDevice(this.db.prisma, deviceId)
    if (device === null) throw new Errors.DeviceNotFound(deviceId)
    return device
  }

  /** Unpairs a device; its live connections close `device removed`. */
  async remove (deviceId: string, actor: Actor): Promise<{ deviceId: string }> {
    assertStorableId(deviceId)
    await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, deviceId)
      const { count } = await tx.device.deleteMany({ where: { id: deviceId } })
      if (count === 0) throw new Errors.DeviceNotFound(deviceId)
      await writeAudit(tx, { actor: actor.id, action: 'device.removed', deviceId, details: {} })
    })
    await this.#publish({ kind: 'device.removed', deviceId, sentAtMs: Date.now() })
    return { deviceId }
  }

  /** Replaces a role's approved scopes; connections left uncovered close `scope revoked (<scope>)`. */
  async setScopes (deviceId: string, role: string, scopes: string[], actor: Actor): Promise<PairedDevice> {
    return await this.#changeScopes(deviceId, role, actor, 'scopes.set', true, () => sortedScopes(scopes), scopes)
  }

  async addScopes (deviceId: string, role: string, scopes: string[], actor: Actor): Promise<PairedDevice> {
    return await this.#changeScopes(deviceId, role, actor, 'scopes.added', true, (current) => sortedScopes([...current, ...scopes]), scopes)
  }

  async revokeScope (deviceId: string, role: string, scope: string, actor: Actor): Promise<PairedDevice> {
    return await this.#changeScopes(deviceId, role, actor, 'scope.revoked', false, (current) => {
      if (!current.includes(scope)) throw withDetails(new Errors.ScopeNotGranted(deviceId, scope, role), { deviceId, role, scope })
      return current.filter((held) => held !== scope)
    }, [scope])
  }

  async #changeScopes (
    deviceId: string, role: string, actor: Actor, action: AuditAction, grants: boolean,
    next: (current: string[]) => string[], named: string[]
  ): Promise<PairedDevice> {
    validateRole(role)
    validateScopes(named)
    assertStorableId(deviceId)
    let removed: string[] = []
    const device = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, deviceId)
      const exists = await tx.device.findUnique({ where: { id: deviceId }, select: { id: true } })
      if (exists === null) throw new Errors.DeviceNotFound(deviceId)
      const row = await tx.deviceRole.findUnique({ where: { deviceId_role: { deviceId, role } } })
      if (row === null && !grants) throw withDetails(new Errors.DeviceRoleNotFound(deviceId, role), { deviceId, role })
      const current = row?.scopes ?? []
      const updated = next(current)
      if (grants) assertReach(actor, updated.filter((scope) => !current.includes(scope)))
      removed = current.filter((scope) => !updated.includes(scope)).sort()
      await tx.deviceRole.upsert({
        where: { deviceId_role: { deviceId, role } },
        create: { deviceId, role, scopes: updated, approvedAt: new Date() },
        update: { scopes: updated }
      })
      await tx.deviceToken.updateMany({ where: { deviceId, role }, data: { scopes: updated } })
      await writeAudit(tx, { actor: actor.id, action, deviceId, details: { role, scopes: named, before: current, after: updated } })
      return await this.#reload(tx, deviceId)
    })
    if (removed.length > 0) await this.#publish({ kind: 'grants.changed', deviceId, role, removed, sentAtMs: Date.now() })
    return device
  }

  /**
   * Mints a new device token for a role and returns it, the only time it is
   * shown; connections that logged in with the old one close `device token revoked`.
   */
  async rotateToken (deviceId: string, role: string, actor: Actor, scopes?: string[]): Promise<RotatedToken> {
    validateRole(role)
    if (scopes !== undefined) validateScopes(scopes)
    assertStorableId(deviceId)
    const token = generateToken()
    const now = new Date(this.clock.now())
    const { oldTokenId, tokenScopes, expiresAt } = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, deviceId)
      const grant = await this.#grant(tx, deviceId, role)
      const override = (await tx.device.findUnique({ where: { id: deviceId }, select: { tokenTtlMs: true } }))?.tokenTtlMs ?? null
      const ttlMs = override === null ? this.tokenTtlMs : Number(override)
      const expiresAt = ttlMs > 0 ? new Date(now.getTime() + ttlMs) : null
      const tokenScopes = sortedScopes(scopes ?? grant.scopes)
      const beyondGrant = uncoveredScopes(tokenScopes, grant.scopes)[0]
      if (beyondGrant !== undefined) throw withDetails(new Errors.ScopeNotGranted(deviceId, beyondGrant, role), { deviceId, role, scope: beyondGrant })
      assertReach(actor, tokenScopes)
      const old = await tx.deviceToken.findUnique({ where: { deviceId_role: { deviceId, role } } })
      const fields = { tokenId: randomUUID(), tokenHash: hashToken(token), scopes: tokenScopes, rotatedAt: now, revokedAt: null, expiresAt }
      await tx.deviceToken.upsert({
        where: { deviceId_role: { deviceId, role } },
        create: { deviceId, role, createdAt: now, ...fields },
        update: fields
      })
      await writeAudit(tx, { actor: actor.id, action: 'token.rotated', deviceId, details: { role, scopes: tokenScopes } })
      return { oldTokenId: old !== null && old.revokedAt === null ? old.tokenId : null, tokenScopes, expiresAt }
    })
    if (oldTokenId !== null) await this.#publish({ kind: 'token.revoked', deviceId, role, tokenId: oldTokenId, sentAtMs: Date.now() })
    return { deviceId, role, token, scopes: tokenScopes, rotatedAtMs: now.getTime(), ...(expiresAt !== null && { expiresAtMs: expiresAt.getTime() }) }
  }

  /**
   * Sets how long this device's tokens live (0: never expire; null: back to
   * DEVICE_TOKEN_TTL_MS). Applies to the tokens minted or rotated from now
   * on; rotate to give a current token the new lifetime.
   */
  async setTokenTtl (deviceId: string, ttlMs: number | null, actor: Actor): Promise<PairedDevice> {
    assertStorableId(deviceId)
    return await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, deviceId)
      const { count } = await tx.device.updateMany({ where: { id: deviceId }, data: { tokenTtlMs: ttlMs === null ? null : BigInt(ttlMs) } })
      if (count === 0) throw new Errors.DeviceNotFound(deviceId)
      await writeAudit(tx, { actor: actor.id, action: 'token.ttl.set', deviceId, details: { ttlMs } })
      return await this.#reload(tx, deviceId)
    })
  }

  /** Revokes a role's device token; the next connect with the gateway token mints a new one. */
  async revokeToken (deviceId: string, role: string, actor: Actor): Promise<{ deviceId: string, role: string, revokedAtMs: number }> {
    validateRole(role)
    assertStorableId(deviceId)
    const now = new Date()
    const { tokenId, revokedAt } = await this.db.prisma.$transaction(async (tx) => {
      await lockDevice(tx, deviceId)
      const token = await tx.deviceToken.findUnique({ where: { deviceId_role: { deviceId, role } } })
      if (token === null) {
        const device = await tx.device.findUnique({ where: { id: deviceId }, select: { id: true } })
        if (device === null) throw new Errors.DeviceNotFound(deviceId)
        throw withDetails(new Errors.DeviceTokenNotFound(deviceId, role), { deviceId, role })
      }
      if (token.revokedAt !== null) return { tokenId: null, revokedAt: token.revokedAt }
      await tx.deviceToken.update({ where: { deviceId_role: { deviceId, role } }, data: { revokedAt: now } })
      await writeAudit(tx, { actor: actor.id, action: 'token.revoked', deviceId, details: { role } })
      return { tokenId: token.tokenId, revokedAt: now }
    })
    if (tokenId !== null) await this.#publish({ kind: 'token.revoked', deviceId, role, tokenId, sentAtMs: Date.now() })
    return { deviceId, role, revokedAtMs: revokedAt.getTime() }
  }

  async #grant (tx: Tx, deviceId: string, role: string): Promise<{ scopes: string[] }> {
    const grant = await tx.deviceRole.findUnique({ where: { deviceId_role: { deviceId, role } } })
    if (grant !== null) return grant
    const device = await tx.device.findUnique({ where: { id: deviceId }, select: { id: true } })
    if (device === null) throw new Errors.DeviceNotFound(deviceId)
    throw withDetails(new Errors.DeviceRoleNotFound(deviceId, role), { deviceId, role })
  }

  async #reload (tx: Tx, deviceId: string): Promise<PairedDevice> {
    const device = await findPairedDevice(tx, deviceId)
    if (device === null) throw new Errors.DeviceNotFound(deviceId)
    return device
  }

  async #publish (message: BusMessage): Promise<void> {
    await this.bus.publish(message)
  }
}
