import { uncoveredScopes } from '../auth/scopes.ts'
import type { BusMessage } from '../db/bus.ts'
import type { SqlClient } from '../db/database.ts'
import { Close } from './close.ts'
import type { GatewayConnection } from './connection.ts'
import type { ConnectionRegistry } from './registry.ts'

type EnforcedMessage = Extract<BusMessage, { kind: 'device.removed' | 'grants.changed' | 'token.revoked' }>

export function isEnforcement (message: BusMessage): message is EnforcedMessage {
  return message.kind === 'device.removed' || message.kind === 'grants.changed' || message.kind === 'token.revoked'
}

/**
 * Closes this instance's connections that a change on any instance leaves
 * without the right to stay. Returns how many it closed.
 */
export async function enforce (message: EnforcedMessage, registry: ConnectionRegistry, sql: SqlClient): Promise<number> {
  const affected: GatewayConnection[] = []
  switch (message.kind) {
    case 'device.removed':
      for (const conn of registry.forDevice(message.deviceId)) {
        conn.close(Close.deviceRemoved)
        affected.push(conn)
      }
      break
    case 'token.revoked':
      for (const conn of registry.forDevice(message.deviceId)) {
        const admission = conn.admission
        if (admission?.role === message.role && admission.authMethod === 'device-token' && admission.tokenId === message.tokenId) {
          conn.close(Close.deviceTokenRevoked)
          affected.push(conn)
        }
      }
      break
    case 'grants.changed': {
      const connections = [...registry.forDevice(message.deviceId)].filter((conn) => conn.admission?.role === message.role)
      if (connections.length === 0) break
      // The database is the source of truth: compare against the grant as it is now.
      const { rows } = await sql.query<{ scopes: string[] }>('SELECT scopes FROM device_roles WHERE device_id = $1 AND role = $2', [message.deviceId, message.role])
      const approved = rows[0]?.scopes ?? []
      for (const conn of connections) {
        const uncovered = uncoveredScopes(conn.admission?.scopes ?? [], approved)
        if (uncovered.length === 0) continue
        const named = message.removed[0] ?? [...uncovered].sort()[0] ?? ''
        conn.close(Close.scopeRevoked(named))
        affected.push(conn)
      }
    }
  }
  return affected.length
}
