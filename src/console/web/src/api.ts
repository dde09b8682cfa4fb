import type { ApiErrorBody } from './types.ts'

/** An /api/v1 error, with Fastify's code and message. */
export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
    this.name = 'ApiError'
  }
}

function isErrorBody (value: unknown): value is ApiErrorBody {
  return typeof value === 'object' && value !== null &&
    typeof (value as Partial<ApiErrorBody>).code === 'string' && typeof (value as Partial<ApiErrorBody>).message === 'string'
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** The admin REST API, with the session's token in the Authorization header. */
export class Api {
  constructor (
    private readonly token: string,
    /** Called on any 401: the token expired or the secret changed. */
    private readonly onUnauthorized: (message: string) => void
  ) {}

  async request<T> (method: Method, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res: Response
    try {
      res = await fetch(`/api/v1${path}`, { method, headers, cache: 'no-store', ...(body !== undefined && { body: JSON.stringify(body) }) })
    } catch {
      throw new ApiError(0, 'NETWORK', 'The server cannot be reached. Check the connection and try again.')
    }
    const text = await res.text()
    let data: unknown = null
    if (text !== '') {
      try {
        data = JSON.parse(text)
      } catch {
        data = null
      }
    }
    if (!res.ok) {
      const error = isErrorBody(data) ? new ApiError(res.status, data.code, data.message) : new ApiError(res.status, 'HTTP', `${res.status} ${res.statusText}`)
      if (res.status === 401) this.onUnauthorized(error.message)
      throw error
    }
    if (typeof data !== 'object' || data === null) throw new ApiError(res.status, 'BAD_RESPONSE', 'The server sent something that is not JSON.')
    // The route schemas (OpenAPI at /api/v1/openapi.json) fix the shape of every 2xx answer.
    return data as T
  }

  get<T> (path: string): Promise<T> { return this.request<T>('GET', path) }
  post<T> (path: string, body: unknown = {}): Promise<T> { return this.request<T>('POST', path, body) }
  delete<T> (path: string): Promise<T> { return this.request<T>('DELETE', path) }
}

/** Builds a query string from the defined, non-empty values. */
export function query (params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') search.set(key, String(value))
  }
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}

export const enc = encodeURIComponent

export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
