// PROTOCOL.md, "Methods and the scope each needs", as the tests check it
// (restated from the contract on purpose: the server's own table is what is tested).
export const METHOD_SCOPES: Readonly<Record<string, string | null>> = {
  health: null,
  status: 'operator.read',
  'cron.list': 'operator.read',
  'cron.status': 'operator.read',
  'cron.get': 'operator.read',
  'cron.runs': 'operator.read',
  'cron.add': 'operator.admin',
  'cron.update': 'operator.admin',
  'cron.remove': 'operator.admin',
  'cron.run': 'operator.admin',
  'device.pair.list': 'operator.pairing',
  'device.pair.approve': 'operator.pairing',
  'device.pair.reject': 'operator.pairing',
  'device.pair.remove': 'operator.pairing',
  'device.token.rotate': 'operator.pairing',
  'device.token.revoke': 'operator.pairing'
}
