import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'

/**
 * REST_RATE_PER_MIN: admin REST requests per minute per client address
 * (request.ip, so X-Forwarded-For counts only under TRUST_PROXY), with
 * @fastify/rate-limit's fixed one-minute window and a bounded LRU of
 * addresses. Registered ahead of the JWT check so that unauthenticated
 * requests count too. Over it: 429 in Fastify's error shape with code
 * RATE_LIMITED and `retry-after` in seconds. Probes and /metrics are not
 * under /api/v1 and are never limited.
 */
export async function registerRestRateLimit (api: FastifyInstance): Promise<void> {
  const perMinute = api.config.restRatePerMin
  if (perMinute === 0) return
  await api.register(rateLimit, {
    global: false,
    max: perMinute,
    timeWindow: 60_000,
    cache: 10_000,
    onExceeded: () => api.metrics.limited('rest'),
    errorResponseBuilder: (_request, context) => Object.assign(
      new Error(`rate limit exceeded: ${context.max} requests per minute, retry in ${context.after}`),
      { statusCode: context.statusCode, code: 'RATE_LIMITED' }
    )
  })
  api.addHook('onRequest', api.rateLimit())
}
