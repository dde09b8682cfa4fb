import net from 'node:net'

/** A TCP proxy in front of Postgres that a test can cut and restore, like a network fault. */
export class TcpProxy {
  readonly #sockets = new Set<net.Socket>()
  #cut = false

  private constructor (private readonly server: net.Server, private readonly target: { host: string, port: number }) {}

  static async start (target = { host: '127.0.0.1', port: 5432 }): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined
    const server = net.createServer((client) => proxy?.accept(client))
    proxy = new TcpProxy(server, target)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return proxy
  }

  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  /** The database URL through this proxy (same credentials and database as the real one). */
  urlFor (databaseUrl: string): string {
    const url = new URL(databaseUrl)
    url.hostname = '127.0.0.1'
    url.port = String(this.port)
    return url.toString()
  }

  private accept (client: net.Socket): void {
    if (this.#cut) {
      client.destroy()
      return
    }
    const upstream = net.connect(this.target.port, this.target.host)
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => {
        this.#sockets.delete(socket)
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  }

  /** Drops every connection and refuses new ones. */
  cut (): void {
    this.#cut = true
    for (const socket of this.#sockets) socket.destroy()
  }

  restore (): void {
    this.#cut = false
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
