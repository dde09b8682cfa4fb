import type { Prisma } from '../generated/prisma/client.ts'

export type AuditAction =
  | 'pairing.requested' | 'pairing.approved' | 'pairing.rejected' | 'pairing.superseded' | 'pairing.expired'
  | 'device.removed' | 'scopes.set' | 'scopes.added' | 'scope.revoked' | 'token.rotated' | 'token.revoked'
  | 'cron.added' | 'cron.updated' | 'cron.removed'

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
