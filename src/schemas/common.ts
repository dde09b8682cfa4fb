import { Type, type TSchema } from 'typebox'

/** Fastify's error shape, the same for every 4xx and 5xx. */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String()
}, { $id: 'ErrorResponse' })

export const IdParam = Type.String({ minLength: 1, maxLength: 128 })

export const ListQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 }))
}

export function Page<T extends TSchema> (item: T) {
  return Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) })
}

const errorRef = Type.Unsafe<{ statusCode: number, code: string, error: string, message: string }>(Type.Ref('ErrorResponse'))

/** Error responses for the statuses a route can answer with. */
export function errors (...statuses: number[]): Record<number, typeof errorRef> {
  return Object.fromEntries(statuses.map((status) => [status, errorRef]))
}
