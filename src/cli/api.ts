import { type Guard, number, object, page, string } from './guards.ts'

/** A failure the CLI reports in one line: exit 1 (refused, not found, server error, unreachable) or 2 (usage). */
export class CliError extends Error {
  readonly exitCode: 1 | 2
  constructor (message: string, exitCode: 1 | 2 = 1) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** The command line itself is wrong: exit 2. */
export class UsageError extends CliError {
  constructor (message: string) {
    super(message, 2)
    this.name = 'UsageError'
  }
}

export const DEFAULT_URL = 'http://127.0.0.1:18789'
const TIMEOUT_MS = 30_000

const ErrorBody = object({ statusCode: number, code: string, message: string })

export interface RequestOptions {
  query?: Record<string, string | number | undefined>
  body?: unknown
  /** What to do next when the server answers 404 (e.g. "list them with `scopegate devices list`"). */
  notFoundHint?: string
  /** What to do next when the server answers 409. */
  conflictHint?: string
  /** What to do next when the server answers 400 with one of these codes. */
  badRequestHints?: Record<string, string>
}

const ADMIN_TOKEN_HINT = 'create one with `scopegate admin-token` and pass it with --token or SCOPEGATE_TOKEN'

/**
 * The admin REST API as the CLI uses it: Node's fetch, the admin JWT, every
 * answer checked against a schema before use, every failure a CliError whose
 * message says what to do next.
 */
export class AdminApi {
  readonly baseUrl: string
  readonly #token: string

  constructor (baseUrl: string, token: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '')
    this.#token = token
  }

  /** One call; the answer is returned only once `guard` accepts it. */
  async request<T> (method: string, path: string, guard: Guard<T>, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + '/api/v1' + path)
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value))
    }
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}`, accept: 'application/json' }
    let body: string | undefined
    if (options.body !== undefined) {
      body = JSON.stringify(options.body)
      headers['content-type'] = 'application/json'
    }

    let response: Response
    try {
      response = await fetch(url, { method, headers, ...(body !== undefined && { body }), signal: AbortSignal.timeout(TIMEOUT_MS) })
    } catch (err) {
      throw this.#unreachable(err)
    }
    let text: string
    try {
      text = await response.text()
    } catch (err) {
      throw this.#unreachable(err)
    }
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      parsed = undefined
    }

    if (!response.ok) throw this.#failure(response, parsed, options)
    if (!guard(parsed)) {
      throw new CliError(`unexpected answer from ${this.baseUrl} to ${method} ${url.pathname} (status ${response.status}): is --url / SCOPEGATE_URL a scopegate gateway of this version?`)
    }
    return parsed
  }

  /** Every item of a list, following `nextCursor` page by page. */
  async listAll<T> (path: string, item: Guard<T>, query: Record<string, string | number | undefined> = {}): Promise<T[]> {
    const PageSchema = page(item)
    const items: T[] = []
    let cursor: string | undefined
    for (let pages = 0; pages < 10_000; pages++) {
      const page = await this.request('GET', path, PageSchema, { query: { ...query, limit: 500, cursor } })
      items.push(...page.items)
      if (page.nextCursor === null || page.nextCursor === cursor) break
      cursor = page.nextCursor
    }
    return items
  }

  #unreachable (err: unknown): CliError {
    if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      return new CliError(`the gateway at ${this.baseUrl} did not answer within ${TIMEOUT_MS / 1000} s: check that it is healthy (${this.baseUrl}/readyz)`)
    }
    const cause = err instanceof Error ? err.cause : undefined
    const code = cause instanceof Error && 'code' in cause && typeof cause.code === 'string' ? cause.code : undefined
    const why = code ?? (cause instanceof Error ? cause.message : err instanceof Error ? err.message : String(err))
    return new CliError(`cannot reach the gateway at ${this.baseUrl} (${why}): start it with \`scopegate serve\`, or point --url / SCOPEGATE_URL at the one that runs`)
  }

  #failure (response: Response, body: unknown, options: RequestOptions): CliError {
    const status = response.status
    const detail = ErrorBody(body) ? body : undefined
    const message = detail?.message ?? `${status} ${response.statusText}`
    switch (status) {
      case 401:
        return new CliError(`the admin token was refused (${message}): ${ADMIN_TOKEN_HINT}`)
      case 403:
        return new CliError(detail?.code === 'FORBIDDEN'
          ? `refused: ${message}; this needs an admin token: create one with \`scopegate admin-token --role admin\``
          : `refused: ${message}`)
      case 404:
        if (detail === undefined || detail.code === 'ROUTE_NOT_FOUND') {
          return new CliError(`${this.baseUrl} has no such route (${message}): is --url / SCOPEGATE_URL a scopegate gateway of this version?`)
        }
        return new CliError(`not found: ${message}${options.notFoundHint !== undefined ? `: ${options.notFoundHint}` : ''}`)
      case 409:
        return new CliError(`refused: ${message}${options.conflictHint !== undefined ? `: ${options.conflictHint}` : ''}`)
      case 429: {
        const retry = response.headers.get('retry-after')
        return new CliError(`rate limited by the gateway: try again${retry !== null ? ` in ${retry} s` : ' later'}`)
      }
      case 503:
        return new CliError(`the gateway at ${this.baseUrl} is not ready (${message}): try again shortly; ${this.baseUrl}/readyz shows which check fails`)
      case 400: {
        const hint = detail !== undefined ? options.badRequestHints?.[detail.code] : undefined
        return new CliError(`invalid input: ${message}${hint !== undefined ? `: ${hint}` : ''}`)
      }
      default:
        if (status >= 500) return new CliError(`the gateway at ${this.baseUrl} failed (${status} ${message}): see its log`)
        return new CliError(`refused: ${message}`)
    }
  }
}
