/**
 * scopegate/client: a typed client for the gateway's WebSocket protocol
 * (PROTOCOL.md). Its only dependencies are `ws` and node:crypto; the types
 * come from the server's own sources.
 */
export {
  GatewayClient, backoffDelay, isRetryableClose, PROTOCOL_VERSION, SDK_VERSION,
  type CallArgs, type CallOptions, type ClientEvents, type ConnectOptions, type ClientInfo, type ClientState, type CloseInfo,
  type GatewayClientEvents, type GatewayClientOptions, type HelloOk, type ReconnectedInfo, type ReconnectingInfo,
  type ReconnectOptions
} from './client.ts'
export { GatewayError, PairingRequiredError, type ClientErrorCode, type ErrorPayload, type GatewayErrorCode, type PairingReason } from './errors.ts'
export type * from './events.ts'
export { DeviceIdentity, deviceIdOf, type IdentityFile } from './identity.ts'
export { METHOD_NAMES } from './methods.ts'
export type * from './methods.ts'
export type { Role, Scope } from '../auth/scopes.ts'
