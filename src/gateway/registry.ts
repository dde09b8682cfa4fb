import type { GatewayConnection } from './connection.ts'

/** The admitted connections of this instance, indexed for targeted closes. */
export class ConnectionRegistry {
  readonly #all = new Set<GatewayConnection>()
  readonly #byDevice = new Map<string, Set<GatewayConnection>>()

  get size (): number {
    return this.#all.size
  }

  add (conn: GatewayConnection): void {
    this.#all.add(conn)
    const deviceId = conn.admission?.deviceId
    if (deviceId == null) return
    let set = this.#byDevice.get(deviceId)
    if (set === undefined) this.#byDevice.set(deviceId, set = new Set())
    set.add(conn)
  }

  delete (conn: GatewayConnection): void {
    if (!this.#all.delete(conn)) return
    const deviceId = conn.admission?.deviceId
    if (deviceId == null) return
    const set = this.#byDevice.get(deviceId)
    set?.delete(conn)
    if (set?.size === 0) this.#byDevice.delete(deviceId)
  }

  forDevice (deviceId: string): Iterable<GatewayConnection> {
    return this.#byDevice.get(deviceId) ?? []
  }

  [Symbol.iterator] (): Iterator<GatewayConnection> {
    return this.#all[Symbol.iterator]()
  }
}
