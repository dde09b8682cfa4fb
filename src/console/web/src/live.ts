import { createContext } from 'preact'
import { useContext, useEffect, useRef } from 'preact/hooks'
import type { AdminEvent } from './types.ts'

export type Listener = (event: AdminEvent) => void

/** Subscribes to the console's one event stream (app.tsx provides it). */
export const EventsContext = createContext<(listener: Listener) => () => void>(() => () => {})

/** Calls `listener` with every admin event while the component is mounted. */
export function useAdminEvents (listener: Listener): void {
  const subscribe = useContext(EventsContext)
  const latest = useRef(listener)
  latest.current = listener
  useEffect(() => subscribe((event) => latest.current(event)), [subscribe])
}
