/**
 * Every WebSocket method in PROTOCOL.md's table, with its params and result
 * types: the one place the client's typed `call` learns them. The types are
 * the server's own (type-only imports: nothing of the server is loaded at
 * run time), so a change on either side shows up in `npm run typecheck`.
 */
import type {
  CronAddParams, CronJobIdParams, CronJobView, CronListPage, CronListParams, CronRemoveResult,
  CronRunParams, CronRunResult, CronRunsParams, CronRunsResult, CronStatusResult, CronUpdateParams
} from '../methods/cron.ts'
import type {
  PairApproveParams, PairApproveResult, PairListResult, PairRejectParams, PairRejectResult, PairRemoveParams,
  PairRemoveResult, TokenRevokeParams, TokenRevokeResult, TokenRotateParams, TokenRotateResult
} from '../methods/devices.ts'
import type { HealthResult } from '../methods/health.ts'
import type { StatusResult } from '../methods/status.ts'

/** A method that takes no params (`{}` or nothing at all). */
export type NoParams = Record<string, never>

interface Method<P, R> { params: P, result: R }

export interface GatewayMethods {
  health: Method<NoParams, HealthResult>
  status: Method<NoParams, StatusResult>
  'cron.list': Method<CronListParams, CronListPage>
  'cron.status': Method<NoParams, CronStatusResult>
  'cron.get': Method<CronJobIdParams, CronJobView>
  'cron.runs': Method<CronRunsParams, CronRunsResult>
  'cron.add': Method<CronAddParams, CronJobView>
  'cron.update': Method<CronUpdateParams, CronJobView>
  'cron.remove': Method<CronJobIdParams, CronRemoveResult>
  'cron.run': Method<CronRunParams, CronRunResult>
  'device.pair.list': Method<NoParams, PairListResult>
  'device.pair.approve': Method<PairApproveParams, PairApproveResult>
  'device.pair.reject': Method<PairRejectParams, PairRejectResult>
  'device.pair.remove': Method<PairRemoveParams, PairRemoveResult>
  'device.token.rotate': Method<TokenRotateParams, TokenRotateResult>
  'device.token.revoke': Method<TokenRevokeParams, TokenRevokeResult>
}

export type MethodName = keyof GatewayMethods
export type ParamsOf<M extends MethodName> = GatewayMethods[M]['params']
export type ResultOf<M extends MethodName> = GatewayMethods[M]['result']

/** The same names at run time (the tests compare them with hello-ok's `features.methods`). */
export const METHOD_NAMES = [
  'health', 'status',
  'cron.list', 'cron.status', 'cron.get', 'cron.runs', 'cron.add', 'cron.update', 'cron.remove', 'cron.run',
  'device.pair.list', 'device.pair.approve', 'device.pair.reject', 'device.pair.remove',
  'device.token.rotate', 'device.token.revoke'
] as const satisfies readonly MethodName[]

// Compile-time: METHOD_NAMES lists every method of the map (an error here names the missing one).
type AssertNone<T extends never> = T
type EveryMethodListed = AssertNone<Exclude<MethodName, (typeof METHOD_NAMES)[number]>>

export type {
  CronAddParams, CronJobIdParams, CronJobView, CronListPage, CronListParams, CronRemoveResult, CronRunParams,
  CronRunResult, CronRunsParams, CronRunsResult, CronStatusResult, CronUpdateParams, HealthResult,
  PairApproveParams, PairApproveResult, PairListResult, PairRejectParams, PairRejectResult, PairRemoveParams,
  PairRemoveResult, StatusResult, TokenRevokeParams, TokenRevokeResult, TokenRotateParams, TokenRotateResult
}
export type { CronRunView } from '../cron/service.ts'
export type { JobPayload, Schedule } from '../cron/schedule.ts'
export type { PairedDevice } from '../devices/service.ts'
export type { PairingRequestView } from '../pairing/service.ts'
