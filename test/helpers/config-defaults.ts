/**
 * The documented defaults of every setting that has one and no per-install
 * value (README, Configuration), the limits apart (DEFAULT_LIMITS). The config
 * tests assert that loadConfig yields them; test servers run with them.
 */
export const CONFIG_DEFAULTS = {
  logLevel: 'info',
  pairingRequestTtlMs: 300_000,
  deviceTokenTtlMs: 30 * 24 * 3600 * 1000,
  handshakeTimeoutMs: 10_000,
  maxPayloadBytes: 1024 * 1024,
  maxBufferedBytes: 4 * 1024 * 1024,
  trustProxy: false,
  tickIntervalMs: 30_000,
  cronLeaseMs: 30_000,
  healthCheckIntervalMs: 1000,
  healthCheckTimeoutMs: 2000,
  shutdownGraceMs: 10_000
} as const
