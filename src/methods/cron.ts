import { Type, type Static } from 'typebox'
import type { Scheduler } from '../cron/scheduler.ts'
import type { JobPayload, Schedule } from '../cron/schedule.ts'
import type { CronListPage, CronJobView, CronRunView, CronService } from '../cron/service.ts'
import { defineMethod, type MethodDef } from './types.ts'

const JobId = Type.String({ minLength: 1, maxLength: 128 })

// The params schemas and result types are exported for the client SDK (src/client/methods.ts).

export const CronListParams = Type.Object({
  includeDisabled: Type.Optional(Type.Boolean()),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  offset: Type.Optional(Type.Integer({ minimum: 0 }))
})
export type CronListParams = Static<typeof CronListParams>

export const CronJobIdParams = Type.Object({ id: JobId })
export type CronJobIdParams = Static<typeof CronJobIdParams>

export const CronRunsParams = Type.Object({ id: JobId, limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) })
export type CronRunsParams = Static<typeof CronRunsParams>

export const CronUpdateParams = Type.Object({ id: JobId, patch: Type.Record(Type.String(), Type.Unknown()) })
/** `patch`: any of the fields cron.add takes (the service names a bad one); unknown fields are kept. */
export type CronUpdateParams = Static<typeof CronUpdateParams>

export const CronRunParams = Type.Object({ id: JobId, mode: Type.Optional(Type.Enum(['force', 'due'])) })
export type CronRunParams = Static<typeof CronRunParams>

/** cron.add: validated field by field by CronService.add; fields the gateway does not interpret are stored as sent. */
export interface CronAddParams {
  name: string
  description?: string
  enabled?: boolean
  schedule: Schedule
  payload: JobPayload
  deleteAfterRun?: boolean
  [extra: string]: unknown
}

export interface CronStatusResult { enabled: boolean, jobs: number, nextWakeAtMs: number | null }
export interface CronRunsResult { entries: CronRunView[] }
export interface CronRemoveResult { ok: true, removed: true }
export interface CronRunResult { ok: true, ran: boolean, runId?: string }
export type { CronJobView, CronListPage, CronRunView }

/** cron.*: reads need operator.read, changes operator.admin (PROTOCOL.md's table). */
export function cronMethods (cron: CronService, scheduler: Scheduler): MethodDef[] {
  return [
    defineMethod({
      name: 'cron.list',
      scope: 'operator.read',
      params: CronListParams,
      handler: async ({ params }): Promise<CronListPage> => await cron.list({ includeDisabled: params.includeDisabled ?? false, limit: params.limit ?? 200, offset: params.offset ?? 0 })
    }),
    defineMethod({
      name: 'cron.status',
      scope: 'operator.read',
      handler: async (): Promise<CronStatusResult> => {
        const { jobs, nextWakeAtMs } = await cron.count()
        return { enabled: scheduler.state.enabled, jobs, nextWakeAtMs }
      }
    }),
    defineMethod({
      name: 'cron.get',
      scope: 'operator.read',
      params: CronJobIdParams,
      handler: async ({ params }): Promise<CronJobView> => await cron.get(params.id)
    }),
    defineMethod({
      name: 'cron.runs',
      scope: 'operator.read',
      params: CronRunsParams,
      handler: async ({ params }): Promise<CronRunsResult> => ({ entries: await cron.runs(params.id, params.limit ?? 50) })
    }),
    defineMethod({
      name: 'cron.add',
      scope: 'operator.admin',
      // Validated field by field by the service, which names the bad field; unknown fields are kept.
      handler: async ({ admission, params }): Promise<CronJobView> => await cron.add(params, admission.deviceId, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.update',
      scope: 'operator.admin',
      params: CronUpdateParams,
      handler: async ({ admission, params }): Promise<CronJobView> => await cron.update(params.id, params.patch, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.remove',
      scope: 'operator.admin',
      params: CronJobIdParams,
      handler: async ({ admission, params }): Promise<CronRemoveResult> => await cron.remove(params.id, admission.deviceId ?? 'gateway-token')
    }),
    defineMethod({
      name: 'cron.run',
      scope: 'operator.admin',
      params: CronRunParams,
      handler: async ({ params }): Promise<CronRunResult> => await scheduler.runNow(params.id, params.mode ?? 'force')
    })
  ]
}
