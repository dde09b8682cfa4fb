import jwt from '@fastify/jwt'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createSigner } from 'fast-jwt'
import { Errors } from '../errors.ts'

export const ADMIN_ROLES = ['admin', 'viewer'] as const
export type AdminRole = (typeof ADMIN_ROLES)[number]

export interface AdminClaims {
  sub: string
  role: AdminRole
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    user: AdminClaims
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route that changes nothing although its method is not GET (a dry run): viewers may call it. */
    readOnly?: boolean
  }
  interface FastifyInstance {
    /** onRequest hook for admin routes: a valid admin JWT; viewers may only read. */
    requireAdmin: (request: FastifyRequest) => Promise<void>
  }
}

const READ_METHODS = new Set(['GET', 'HEAD'])

function isAdminClaims (value: unknown): value is AdminClaims {
  const claims = value as Partial<AdminClaims> | null
  return typeof claims?.sub === 'string' && claims.sub.length > 0 && (ADMIN_ROLES as readonly unknown[]).includes(claims.role)
}

async function adminJwtPlugin (app: FastifyInstance): Promise<void> {
  await app.register(jwt, {
    secret: app.config.jwtSecret,
    sign: { algorithm: 'HS256' },
    verify: { algorithms: ['HS256'] }
  })
  app.decorate('requireAdmin', async (request: FastifyRequest) => {
    let claims: unknown
    try {
      claims = await request.jwtVerify()
    } catch (err) {
      // Whatever is wrong with the header or the token (format, algorithm, not yet valid, payload) is a 401, never a 400 or 500.
      if ((err as { statusCode?: number }).statusCode === 401) throw err
      throw new Errors.Unauthorized(`invalid admin token: ${(err as Error).message}`)
    }
    if (!isAdminClaims(claims)) throw new Errors.Unauthorized('admin token needs a sub claim and a role claim of admin or viewer')
    if (claims.role === 'viewer' && !READ_METHODS.has(request.method) && request.routeOptions.config?.readOnly !== true) throw new Errors.ViewerReadOnly(request.method)
  })
}

export default fp(adminJwtPlugin, { name: 'admin-jwt', dependencies: ['config'] })

/** Signs an admin JWT (HS256) the way `scopegate admin-token` prints it. */
export function signAdminToken (secret: string, claims: AdminClaims, ttlMs: number): string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: ttlMs })
  return sign({ sub: claims.sub, role: claims.role })
}
