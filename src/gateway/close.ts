import type { WebSocket } from 'ws'

export interface CloseSpec {
  code: number
  reason: string
  /** The reason without its variable part (`scope revoked`), for metric labels; absent when the reason is fixed. */
  kind?: string
}

/** Every close code and reason the gateway uses, in one table (PROTOCOL.md). */
export const Close = {
  invalidFrame: { code: 1003, reason: 'invalid frame' },
  connectRequired: { code: 1008, reason: 'connect required' },
  connectTimeout: { code: 1008, reason: 'connect timeout' },
  protocolMismatch: { code: 1002, reason: 'protocol mismatch' },
  invalidRole: { code: 1008, reason: 'invalid role' },
  invalidConnectParams: (field: string): CloseSpec => ({ code: 1008, reason: `invalid connect params: ${field}`, kind: 'invalid connect params' }),
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
  scopeRevoked: (scope: string): CloseSpec => ({ code: 1008, reason: `scope revoked (${scope})`, kind: 'scope revoked' }),
  pairingSuperseded: { code: 1008, reason: 'pairing superseded' },
  slowConsumer: { code: 1008, reason: 'slow consumer' },
  /** HANDSHAKE_RATE_PER_IP: after a RATE_LIMITED answer with retryAfterMs. */
  rateLimited: { code: 1008, reason: 'rate limited' },
  tryAgainLater: { code: 1013, reason: 'try again later' },
  internalError: { code: 1011, reason: 'internal error' },
  serviceRestart: { code: 1012, reason: 'service restart' }
} as const

/**
 * The close ws itself made after a protocol error from the peer (a frame
 * over MAX_PAYLOAD_BYTES: 1009; bad UTF-8: 1007; others: 1002), for the
 * metrics; undefined for errors that are not ws protocol errors.
 */
export function wsErrorClose (err: Error & { code?: unknown }): { code: number, kind: string } | undefined {
  const errorCode = typeof err.code === 'string' ? err.code : ''
  if (!errorCode.startsWith('WS_ERR_')) return undefined
  if (errorCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return { code: 1009, kind: 'message too big' }
  if (errorCode === 'WS_ERR_INVALID_UTF8') return { code: 1007, kind: 'invalid utf-8' }
  return { code: 1002, kind: 'protocol error' }
}

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

/**
 * The one way the gateway closes a socket. `onClose` hears of each close it
 * makes (not of a socket already closing) with the code and the reason's kind.
 */
export function closeSocket (socket: WebSocket, spec: CloseSpec, onClose?: (code: number, kind: string) => void): void {
  if (socket.readyState === socket.CLOSED || socket.readyState === socket.CLOSING) return
  socket.close(spec.code, truncateReason(spec.reason))
  onClose?.(spec.code, spec.kind ?? spec.reason)
}
