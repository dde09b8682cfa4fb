import createError from '@fastify/error'

/**
 * Domain errors: one code, one message template, one HTTP status each. REST
 * maps them through Fastify's error handler (app.ts); the gateway maps them to
 * protocol error frames with toProtocolError (gateway/frames.ts).
 */
export const Errors = {
  PairingRequestNotFound: createError<'PAIRING_REQUEST_NOT_FOUND', 404, [string]>('PAIRING_REQUEST_NOT_FOUND', 'unknown requestId: %s', 404),
  PairingRequestNotPending: createError<'PAIRING_REQUEST_NOT_PENDING', 409, [string, string]>('PAIRING_REQUEST_NOT_PENDING', 'pairing request %s is %s', 409),
  DeviceRoleNotFound: createError<'DEVICE_ROLE_NOT_FOUND', 404, [string, string]>('DEVICE_ROLE_NOT_FOUND', 'device %s is not paired for role %s', 404),
  ScopeNotGranted: createError<'SCOPE_NOT_GRANTED', 404, [string, string, string]>('SCOPE_NOT_GRANTED', 'device %s holds no scope %s for role %s', 404),
  DeviceTokenNotFound: createError<'DEVICE_TOKEN_NOT_FOUND', 404, [string, string]>('DEVICE_TOKEN_NOT_FOUND', 'device %s has no token for role %s', 404),
  InvalidRole: createError<'INVALID_ROLE', 400, [string]>('INVALID_ROLE', 'invalid role: %s (expected operator or node)', 400),
  DeviceNotFound: createError<'DEVICE_NOT_FOUND', 404, [string]>('DEVICE_NOT_FOUND', 'unknown deviceId: %s', 404),
  InvalidScope: createError<'INVALID_SCOPE', 400, [string]>('INVALID_SCOPE', 'invalid scope: %s', 400),
  ScopesNotRequested: createError<'SCOPES_NOT_REQUESTED', 400, [string]>('SCOPES_NOT_REQUESTED', 'scopes must be a non-empty subset of the requested scopes; not requested: %s', 400),
  InvalidCursor: createError<'INVALID_CURSOR', 400, []>('INVALID_CURSOR', 'cursor is not one this API returned', 400),
  CronJobNotFound: createError<'CRON_JOB_NOT_FOUND', 404, [string]>('CRON_JOB_NOT_FOUND', 'cron job not found: %s', 404),
  InvalidCronParams: createError<'INVALID_PARAMS', 400, [string]>('INVALID_PARAMS', 'invalid params: %s', 400),
  PolicyNotFound: createError<'POLICY_NOT_FOUND', 404, [string]>('POLICY_NOT_FOUND', 'unknown policy id: %s', 404),
  InvalidPolicy: createError<'INVALID_POLICY', 400, [string]>('INVALID_POLICY', '%s', 400),
  PolicyNeedsAllowPrivileged: createError<'POLICY_NEEDS_ALLOW_PRIVILEGED', 400, [string]>('POLICY_NEEDS_ALLOW_PRIVILEGED',
    'body/allowPrivileged must be true: this rule could grant %s (its scopes or scopesWithin name them, or neither limits the scopes)', 400),
  MissingScope: createError<'MISSING_SCOPE', 403, [string]>('MISSING_SCOPE', 'missing scope: %s', 403),
  Unauthorized: createError<'UNAUTHORIZED', 401, [string]>('UNAUTHORIZED', '%s', 401),
  ViewerReadOnly: createError<'FORBIDDEN', 403, [string]>('FORBIDDEN', 'role viewer may only read: %s is not allowed', 403),
  Unavailable: createError<'UNAVAILABLE', 503, [string]>('UNAVAILABLE', 'database unavailable: %s', 503)
} as const

export type DomainError = Error & { code: string, statusCode?: number, details?: Record<string, unknown> }

/** Attaches structured details that both the REST and the protocol mapping pass on. */
export function withDetails<E extends Error> (err: E, details: Record<string, unknown>): E & { details: Record<string, unknown> } {
  return Object.assign(err, { details })
}
