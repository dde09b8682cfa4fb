import type { WebSocket } from 'ws'

export interface CloseSpec {
  code: number
  reason: string
}

/** Every close code and reason the gateway uses, in one table (PROTOCOL.md). */
export const Close = {
  invalidFrame: { code: 1003, reason: 'invalid frame' },
  connectRequired: { code: 1008, reason: 'connect required' },
  connectTimeout: { code: 1008, reason: 'connect timeout' },
  protocolMismatch: { code: 1002, reason: 'protocol mismatch' },
  invalidRole: { code: 1008, reason: 'invalid role' },
  invalidConnectParams: (field: string): CloseSpec => ({ code: 1008, reason: `invalid connect params: ${field}` }),
  gatewayTokenMissing: { code: 1008, reason: 'unauthorized: gateway token missing' },
  gatewayTokenMismatch: { code: 1008, reason: 'unauthorized: gateway token mismatch' },
  deviceTokenMismatch: { code: 1008, reason: 'unauthorized: device token mismatch' },
  deviceTokenExpired: { code: 1008, reason: 'device token expired' },
  deviceIdentityMismatch: { code: 1008, reason: 'device identity mismatch' },
  deviceNonceMismatch: { code: 1008, reason: 'device nonce mismatch' },
  deviceSignatureExpired: { code: 1008, reason: 'device signature expired' },
  deviceSignatureInvalid: { code: 1008, reason: 'device signature invalid' },
  pairingRequired: (reason: string): CloseSpec => ({ code: 1008, reason: `pairing required (${reason})` }),
  deviceRemoved: { code: 1008, reason: 'device removed' },
  deviceTokenRevoked: { code: 1008, reason: 'device token revoked' },
  scopeRevoked: (scope: string): CloseSpec => ({ code: 1008, reason: `scope revoked (${scope})` }),
  pairingSuperseded: { code: 1008, reason: 'pairing superseded' },
  slowConsumer: { code: 1008, reason: 'slow consumer' },
  tryAgainLater: { code: 1013, reason: 'try again later' },
  internalError: { code: 1011, reason: 'internal error' },
  serviceRestart: { code: 1012, reason: 'service restart' }
} as const

const MAX_REASON_BYTES = 123

/** Cuts a close reason to 123 bytes of UTF-8 without splitting a character. */
export function truncateReason (reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_REASON_BYTES) return reason
  let out = ''
  let bytes = 0
  for (const char of reason) {
    const size = Buffer.byteLength(char)
    if (bytes + size > MAX_REASON_BYTES) break
    out += char
    bytes += size
  }
  return out
}

/** The one way the gateway closes a socket. */
export function closeSocket (socket: WebSocket, spec: CloseSpec): void {
  if (socket.readyState === socket.CLOSED || socket.readyState === socket.CLOSING) return
  socket.close(spec.code, truncateReason(spec.reason))
}
