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
    if (Number.isSafeInteger(atMs) && Math.abs(atMs as number) <= 8.64e15 && typeof id === 'string' && id.length <= 128) return { atMs: atMs as number, id }
  } catch {}
  throw withDetails(new Errors.InvalidCursor(), { cursor })
}
