import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { Type, type Static, type TSchema } from 'typebox'
import { ROLES, SCOPES } from '../auth/scopes.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { DomainError } from '../errors.ts'
import { STORABLE_TEXT_PATTERN } from '../schemas/text.ts'

export const PROTOCOL_VERSION = 4

const Id = Type.String({ minLength: 1, maxLength: 128 })
const ShortText = Type.String({ maxLength: 256 })
/** Client fields that a pairing request stores: no U+0000, no lone surrogate (src/schemas/text.ts). */
const StoredText = Type.String({ maxLength: 256, pattern: STORABLE_TEXT_PATTERN })

export const RequestFrame = Type.Object({
  type: Type.Literal('req'),
  id: Id,
  method: Type.String({ minLength: 1, maxLength: 128 }),
  params: Type.Optional(Type.Unknown())
})
export type RequestFrame = Static<typeof RequestFrame>

export const ConnectParams = Type.Object({
  minProtocol: Type.Integer(),
  maxProtocol: Type.Integer(),
  client: Type.Object({
    id: Type.String({ minLength: 1, maxLength: 128, pattern: STORABLE_TEXT_PATTERN }),
    version: ShortText,
    platform: StoredText,
    deviceFamily: Type.Optional(StoredText),
    mode: Type.String({ minLength: 1, maxLength: 64, pattern: STORABLE_TEXT_PATTERN }),
    instanceId: Type.Optional(ShortText),
    displayName: Type.Optional(StoredText)
  }),
  caps: Type.Optional(Type.Array(ShortText, { maxItems: 64 })),
  role: Type.String({ maxLength: 64 }),
  scopes: Type.Array(Type.Enum(SCOPES), { maxItems: 32 }),
  auth: Type.Optional(Type.Object({
    token: Type.Optional(Type.String({ maxLength: 1024 })),
    deviceToken: Type.Optional(Type.String({ maxLength: 1024 }))
  })),
  device: Type.Optional(Type.Object({
    id: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    publicKey: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    signature: Type.String({ pattern: '^[A-Za-z0-9_-]{86}$' }),
    signedAt: Type.Integer({ minimum: 0 }),
    nonce: Type.String({ minLength: 1, maxLength: 128 })
  }))
})
export type ConnectParams = Static<typeof ConnectParams>

export const KNOWN_ROLES: readonly string[] = ROLES

const ajv = new Ajv({ strict: false, allErrors: false })

export interface Validator<T> {
  (value: unknown): value is T
  errors?: ErrorObject[] | null
}

export function compile<S extends TSchema> (schema: S): Validator<Static<S>> {
  return ajv.compile(schema) as ValidateFunction<Static<S>>
}

export const isRequestFrame = compile(RequestFrame)
export const isConnectParams = compile(ConnectParams)

/** Names the first invalid field as a dotted path: `client.id`, `scopes[0]`. */
export function invalidField (errors: ErrorObject[] | null | undefined): string {
  const error = errors?.[0]
  if (error === undefined) return 'params'
  const segments = error.instancePath.split('/').slice(1)
  if (error.keyword === 'required') segments.push(String((error.params as { missingProperty: string }).missingProperty))
  let path = ''
  for (const segment of segments) {
    path += /^\d+$/.test(segment) ? `[${segment}]` : (path === '' ? segment : `.${segment}`)
  }
  return path === '' ? 'params' : path
}

export type ProtocolErrorCode = 'INVALID_REQUEST' | 'NOT_PAIRED' | 'FORBIDDEN' | 'UNAVAILABLE' | 'RATE_LIMITED' | 'INTERNAL'

export interface ErrorShape {
  code: ProtocolErrorCode
  message: string
  details?: Record<string, unknown>
  retryable?: boolean
  retryAfterMs?: number
}

/** An error a method answers with; the socket stays open. */
export class ProtocolError extends Error {
  constructor (readonly shape: ErrorShape) {
    super(shape.message)
  }
}

export function invalidRequest (message: string, details?: Record<string, unknown>): ProtocolError {
  return new ProtocolError({ code: 'INVALID_REQUEST', message, ...(details && { details }) })
}

/** The one mapping from thrown errors to protocol error shapes. */
export function toProtocolError (err: unknown): ErrorShape {
  if (err instanceof ProtocolError) return err.shape
  const domain = err as DomainError
  if (typeof domain?.code === 'string' && typeof domain.statusCode === 'number' && domain.statusCode < 500) {
    const details = { code: domain.code, ...domain.details }
    if (domain.statusCode === 403) return { code: 'FORBIDDEN', message: domain.message, details }
    return { code: 'INVALID_REQUEST', message: domain.message, details }
  }
  if (domain?.statusCode === 503 || isDatabaseUnavailable(err)) return { code: 'UNAVAILABLE', message: 'database unavailable, try again later', retryable: true }
  return { code: 'INTERNAL', message: 'internal error' }
}

/** The same text as JSON.stringify({ type: 'res', id, ok: true, payload }), without building the envelope (one per RPC). */
export function responseFrame (id: string, payload: unknown): string {
  const json = JSON.stringify(payload) as string | undefined
  return json === undefined
    ? `{"type":"res","id":${JSON.stringify(id)},"ok":true}`
    : `{"type":"res","id":${JSON.stringify(id)},"ok":true,"payload":${json}}`
}

export function errorFrame (id: string, error: ErrorShape): string {
  return JSON.stringify({ type: 'res', id, ok: false, error })
}

export function eventFrame (event: string, payload: unknown): string {
  return JSON.stringify({ type: 'event', event, payload })
}
