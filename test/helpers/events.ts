/** One server-sent event of GET /api/v1/events. */
export interface StreamEvent {
  event: string
  data: any
}

/** Follows GET /api/v1/events the way the console does: fetch() with the token in the Authorization header. */
export class EventStream {
  readonly events: StreamEvent[] = []
  readonly ended: Promise<void>
  #waiters: Array<() => void> = []
  #consumed = new Set<StreamEvent>()
  readonly #controller: AbortController

  private constructor (readonly response: Response, controller: AbortController) {
    this.#controller = controller
    this.ended = this.#read()
  }

  static async open (httpUrl: string, token: string): Promise<EventStream> {
    const controller = new AbortController()
    const response = await fetch(`${httpUrl}/api/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal })
    if (!response.ok) throw new Error(`events stream refused: ${response.status} ${await response.text()}`)
    return new EventStream(response, controller)
  }

  async #read (): Promise<void> {
    const body = this.response.body
    if (body === null) return
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true })
        const blocks = buffer.split('\n\n')
        buffer = blocks.pop() ?? ''
        for (const block of blocks) {
          const lines = block.split('\n').filter((line) => !line.startsWith(':'))
          const name = lines.find((line) => line.startsWith('event: '))?.slice(7)
          const data = lines.find((line) => line.startsWith('data: '))?.slice(6)
          if (name !== undefined && data !== undefined) this.events.push({ event: name, data: JSON.parse(data) })
        }
        this.#wake()
      }
    } catch {
      // aborted by close()
    } finally {
      this.#wake()
    }
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  /** The first event not yet taken that matches, waiting up to timeoutMs for it. */
  async next (match: (event: StreamEvent) => boolean, timeoutMs = 5000): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.events.find((event) => !this.#consumed.has(event) && match(event))
      if (found !== undefined) {
        this.#consumed.add(found)
        return found
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(this.events)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async event (name: string, timeoutMs?: number): Promise<StreamEvent> {
    return await this.next((event) => event.event === name, timeoutMs)
  }

  close (): void {
    this.#controller.abort()
  }
}
