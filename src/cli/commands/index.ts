import type { Command } from 'commander'
import { registerAudit } from './audit.ts'
import { registerCron } from './cron.ts'
import { registerDevices, registerGrants, registerTokens } from './devices.ts'
import { registerPolicies } from './policies.ts'
import { registerRequests } from './requests.ts'

/** The admin commands: each talks to a running gateway over the REST API with an admin JWT. */
export function registerAdminCommands (program: Command): void {
  registerRequests(program)
  registerDevices(program)
  registerGrants(program)
  registerTokens(program)
  registerCron(program)
  registerAudit(program)
  registerPolicies(program)
}
