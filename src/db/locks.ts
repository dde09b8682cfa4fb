import type { Prisma } from '../generated/prisma/client.ts'

/**
 * Serializes every change to one device's pairing state and grants, across
 * instances, for the rest of the caller's transaction.
 */
export async function lockDevice (tx: Prisma.TransactionClient, deviceId: string): Promise<void> {
  await tx.$queryRaw`SELECT pg_advisory_xact_lock(hashtext(${'scopegate:device:' + deviceId}))::text`
}
