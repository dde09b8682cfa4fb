import type { Scheduler } from '../cron/scheduler.ts'
import type { CronService } from '../cron/service.ts'
import type { ConnectionRegistry } from '../gateway/registry.ts'
import type { MethodDef } from './types.ts'

/** `status` (operator.read): this instance and its scheduler. */
export interface StatusResult {
  ok: true
  ts: number
  gateway: { version: string, instance: string, uptimeMs: number, connections: number }
  scheduler: Scheduler['state'] & { jobs: number, nextWakeAtMs: number | null }
}

export function statusMethods (version: string, startedAtMs: number, registry: ConnectionRegistry, cron: CronService, scheduler: Scheduler): MethodDef[] {
  return [
    {
      name: 'status',
      scope: 'operator.read',
      handler: async (): Promise<StatusResult> => {
        const { jobs, nextWakeAtMs } = await cron.count()
        return {
          ok: true,
          ts: Date.now(),
          gateway: { version, instance: scheduler.instanceId, uptimeMs: Date.now() - startedAtMs, connections: registry.size },
          scheduler: { ...scheduler.state, jobs, nextWakeAtMs }
        }
      }
    }
  ]
}
