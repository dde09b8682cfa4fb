import type { ProtocolErrorCode } from '../gateway/frames.ts'
import type { PairingReason } from '../pairing/service.ts'

/** Errors the client makes itself: no answer in time, no connection, the socket closed under a call. */
export type ClientErrorCode = 'TIMEOUT' | 'NOT_CONNECTED' | 'CLOSED' | 'CONNECTION_FAILED' | 'ABORTED'

export type GatewayErrorCode = ProtocolErrorCode | ClientErrorCode

/** The `error` of a response frame (PROTOCOL.md, Frames). */
export interface ErrorPayload {
  code: string
  message: string
  details?: Record<string, unknown>
  retryable?: boolean
  retryAfterMs?: number
}

export interface GatewayErrorInit extends ErrorPayload {
  /** The close that came with a refused connect, or that ended the connection under a call. */
  closeCode?: number
  closeReason?: string
  cause?: unknown
}

/**
 * An error answered by the gateway (its `code`, `message`, `details`) or made
 * by the client (TIMEOUT, NOT_CONNECTED, CLOSED, CONNECTION_FAILED, ABORTED).
 * `retryable`: the same request may succeed later (the gateway said so, or it
 * is RATE_LIMITED: wait `retryAfterMs`).
 */
export class GatewayError extends Error {
  readonly code: GatewayErrorCode
  readonly details: Record<string, unknown> | undefined
  readonly retryable: boolean
  readonly retryAfterMs: number | undefined
  readonly closeCode: number | undefined
  readonly closeReason: string | undefined

  constructor (init: GatewayErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = 'GatewayError'
    this.code = init.code as GatewayErrorCode
    this.details = init.details
    this.retryAfterMs = init.retryAfterMs
    this.retryable = init.retryable ?? (init.code === 'RATE_LIMITED' && init.retryAfterMs !== undefined)
    this.closeCode = init.closeCode
    this.closeReason = init.closeReason
  }

  /** `details.code`, e.g. MISSING_SCOPE, CRON_JOB_NOT_FOUND, AUTH_TOKEN_MISMATCH. */
  get detailsCode (): string | undefined {
    const code = this.details?.code
    return typeof code === 'string' ? code : undefined
  }

  /** The error made from a response frame's `error`: a PairingRequiredError for NOT_PAIRED. */
  static from (error: ErrorPayload, close?: { code: number, reason: string }): GatewayError {
    const init: GatewayErrorInit = { ...error, ...(close !== undefined && { closeCode: close.code, closeReason: close.reason }) }
    return error.code === 'NOT_PAIRED' ? new PairingRequiredError(init) : new GatewayError(init)
  }
}

function strings (value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []
}

function text (value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

/**
 * The connect was refused NOT_PAIRED: an admin must approve `requestId`
 * (`scopegate requests approve <requestId>`). Connecting again with the same
 * ask reuses the same pending request.
 */
export class PairingRequiredError extends GatewayError {
  readonly reason: PairingReason
  /** The pending request to approve; undefined only when an approval policy refused (see `policyId`). */
  readonly requestId: string | undefined
  readonly deviceId: string | undefined
  readonly requestedRole: string | undefined
  /** The pending request's scopes (after any union with an earlier ask). */
  readonly requestedScopes: string[]
  /** The scopes already approved for this role, sorted (`[]` for a new device). */
  readonly approvedScopes: string[]
  /** One line a person can act on: which request, and the command that approves it. */
  readonly remediationHint: string | undefined
  readonly policyId: string | undefined

  constructor (init: GatewayErrorInit) {
    super(init)
    this.name = 'PairingRequiredError'
    const details = init.details ?? {}
    this.reason = (text(details.reason) ?? /\(([^)]+)\)/.exec(init.message)?.[1] ?? 'not-paired') as PairingReason
    this.requestId = text(details.requestId)
    this.deviceId = text(details.deviceId)
    this.requestedRole = text(details.requestedRole)
    this.requestedScopes = strings(details.requestedScopes)
    this.approvedScopes = strings(details.approvedScopes)
    this.remediationHint = text(details.remediationHint)
    this.policyId = text(details.policyId)
  }
}

export type { PairingReason }
