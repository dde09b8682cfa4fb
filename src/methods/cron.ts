import { Type } from 'typebox'
import type { Scheduler } from '../cron/scheduler.ts'
import type { CronService } from '../cron/service.ts'
import { defineMethod, type MethodDef } from './types.ts'

const JobId = Type.String({ minLength: 1, maxLength: 128 })

/** cron.*: reads need operator.read, changes operator.admin (PROTOCOL.md's table). */
export function cronMethods (cron: CronService, scheduler: Scheduler): MethodDef[] {
  return [
    defineMethod({
      name: 'cron.list',
      scope: 'operator.read',
      params: Type.Object({
        includeDisabled: Type.Optional(Type.Boolean()),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        offset: Type.Optional(Type.Integer({ minimum: 0 }))
      }),
      handler: async ({ params }) => await cron.list({ includeDisabled: params.includeDisabled ?? false, limit: params.limit ?? 200, offset: params.offset ?? 0 })
    }),
    defineMethod({
      name: 'cron.status',
      scope: 'operator.read',
      handler: async () => {
        const { jobs, nextWakeAtMs } = await cron.count()
        return { enabled: scheduler.state.enabled, jobs, nextWakeAtMs }
      }
    }),
    defineMethod({
      name: 'cron.get',
      scope: 'operator.read',
      params: Type.Object({ id: JobId }),
      handler: async ({ params }) => await cron.get(params.id)
    }),
    defineMethod({
      name: 'cron.runs',
      scope: 'operator.read',
      params: Type.Object({ id: JobId, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }),
      handler: async ({ params }) => ({ entries: await cron.runs(params.id, params.limit ?? 50) })
    }),
    defineMethod({
      name: 'cron.add',
      scope: 'operator.admin',
      // Validated field by field by the service, which names the bad field; unknown fields are kept.
      handler: async ({ admission, params }) => await cron.add(params, admission.deviceId, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.update',
      scope: 'operator.admin',
      params: Type.Object({ id: JobId, patch: Type.Record(Type.String(), Type.Unknown()) }),
      handler: async ({ admission, params }) => await cron.update(params.id, params.patch, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.remove',
      scope: 'operator.admin',
      params: Type.Object({ id: JobId }),
      handler: async ({ admission, params }) => await cron.remove(params.id, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.run',
      scope: 'operator.admin',
      params: Type.Object({ id: JobId, mode: Type.Optional(Type.Enum(['force', 'due'])) }),
      handler: async ({ params }) => await scheduler.runNow(params.id, params.mode ?? 'force')
    })
  ]
}
