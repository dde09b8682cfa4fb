const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Request, job and run ids are UUIDs in the database. Any other string can
 * match nothing, so callers answer 404 without asking (API.md).
 */
export function isUuid (id: string): boolean {
  return UUID.test(id)
}
