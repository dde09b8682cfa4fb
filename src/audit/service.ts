import { Errors, withDetails } from '../errors.ts'
import type { Prisma, PrismaClient } from '../generated/prisma/client.ts'
import { isStorableText } from '../schemas/text.ts'
import type { AuditAction, AuditEntryView } from '../views.ts'

export type { AuditAction, AuditEntryView } from '../views.ts'


export interface AuditRecord {
  actor: string
  action: AuditAction
  deviceId?: string
  requestId?: string
  details?: Prisma.InputJsonObject
}

/** Writes one audit row inside the caller's transaction, so it commits with the change. */
export async function writeAudit (tx: Prisma.TransactionClient, record: AuditRecord): Promise<void> {
  await tx.auditEntry.create({
    data: {
      actor: record.actor,
      action: record.action,
      deviceId: record.deviceId ?? null,
      requestId: record.requestId ?? null,
      details: record.details ?? {}
    }
  })
}


export interface AuditQuery {
  deviceId?: string
  action?: string
  limit: number
  cursor?: string
}

const MAX_BIGINT = 9223372036854775807n

/** Newest first; the cursor is the id of the last entry of the previous page. */
export async function listAudit (prisma: PrismaClient, query: AuditQuery): Promise<{ items: AuditEntryView[], nextCursor: string | null }> {
  const where: Prisma.AuditEntryWhereInput = {}
  // A filter that cannot be stored (U+0000, a lone surrogate) matches no stored row (and Postgres would refuse the query).
  if ((query.deviceId !== undefined && !isStorableText(query.deviceId)) || (query.action !== undefined && !isStorableText(query.action))) return { items: [], nextCursor: null }
  if (query.deviceId !== undefined) where.deviceId = query.deviceId
  if (query.action !== undefined) where.action = query.action
  if (query.cursor !== undefined && query.cursor !== '') {
    // Audit ids are Postgres bigints: anything past their range is not a cursor this API returned.
    if (!/^\d{1,19}$/.test(query.cursor) || BigInt(query.cursor) > MAX_BIGINT) throw withDetails(new Errors.InvalidCursor(), { cursor: query.cursor })
    where.id = { lt: BigInt(query.cursor) }
  }
  const rows = await prisma.auditEntry.findMany({ where, orderBy: { id: 'desc' }, take: query.limit + 1 })
  const items = rows.slice(0, query.limit).map((row) => ({
    id: row.id.toString(),
    atMs: row.at.getTime(),
    actor: row.actor,
    action: row.action,
    ...(row.deviceId !== null && { deviceId: row.deviceId }),
    ...(row.requestId !== null && { requestId: row.requestId }),
    details: (row.details ?? {}) as Record<string, unknown>
  }))
  const last = items.at(-1)
  return { items, nextCursor: rows.length > query.limit && last !== undefined ? last.id : null }
}
