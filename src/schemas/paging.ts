import { Errors, withDetails } from '../errors.ts'

export interface Page<T> {
  items: T[]
  nextCursor: string | null
}

/** Cursors are opaque to clients: the (time, id) of the last item of a page. */
export function encodeCursor (atMs: number, id: string): string {
  return Buffer.from(JSON.stringify([atMs, id])).toString('base64url')
}

export function decodeCursor (cursor: string | undefined): { atMs: number, id: string } | null {
  if (cursor === undefined || cursor === '') return null
  try {
    const [atMs, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown[]
    if (typeof atMs === 'number' && typeof id === 'string') return { atMs, id }
  } catch {}
  throw withDetails(new Errors.InvalidCursor(), { cursor })
}
