import { TestDevice, type ConnectOptions, type ConnectResult, type Frame, type TestSocket } from './device.ts'
import type { Teardown, TestServer } from './server.ts'

/** What the pairing helpers need of a server: an in-process TestServer or a child Instance. */
export type PairingServer = Pick<TestServer, 'wsUrl' | 'api'> & { config: { gatewayToken: string } }

export interface PairedTestDevice {
  device: TestDevice
  /** The device token issued in the hello-ok after approval. */
  deviceToken: string
  /** The hello-ok payload of the admitted connection. */
  hello: Frame['payload']
  /** The admitted connection (open with `keepOpen` or `teardown`, closed otherwise). */
  conn: ConnectResult
  /** The admitted connection's socket: `conn.socket`. */
  socket: TestSocket
  requestId: string
}

export interface PairingRequest {
  device: TestDevice
  /** The id of the pending pairing request. */
  requestId: string
  /** The refusal (NOT_PAIRED) the connect got. */
  res: Frame
}

export interface RequestOptions extends Omit<ConnectOptions, 'token' | 'deviceToken' | 'scopes'> {
  /** The device that asks (a new one by default). */
  device?: TestDevice
}

export interface PairOptions extends RequestOptions {
  /** Scopes to approve, when fewer than asked. */
  approveScopes?: string[]
  /** Keep the admitted connection open (default: close it). */
  keepOpen?: boolean
  /** Keep the admitted connection open and close it when this test ends. */
  teardown?: Teardown
}

/**
 * A device connects with the gateway token for `scopes` and is refused,
 * pairing required: returns the pending request once the server closed the
 * socket. Throws on any other outcome.
 */
export async function requestPairing (server: PairingServer, scopes: string[], opts: RequestOptions = {}): Promise<PairingRequest> {
  const { device = new TestDevice(), ...connect } = opts
  const refused = await device.connect(server.wsUrl, { ...connect, token: server.config.gatewayToken, scopes })
  if (refused.res.ok !== false || refused.res.error?.code !== 'NOT_PAIRED') {
    throw new Error(`expected a pairing refusal, got ${JSON.stringify(refused.res)}`)
  }
  await refused.socket.closed
  return { device, requestId: refused.res.error.details.requestId as string, res: refused.res }
}

/**
 * Pairs a device for `scopes` the way a person would: connect (refused,
 * pairing required), approve the request over REST, connect again with the
 * gateway token and keep the device token from hello-ok.
 */
export async function pairDevice (server: PairingServer, scopes: string[], opts: PairOptions = {}): Promise<PairedTestDevice> {
  const { device = new TestDevice(), approveScopes, keepOpen = false, teardown, ...connect } = opts
  const { requestId } = await requestPairing(server, scopes, { ...connect, device })
  const approved = await server.api('POST', `/api/v1/pairing-requests/${requestId}/approve`, approveScopes === undefined ? {} : { body: { scopes: approveScopes } })
  if (approved.status !== 200) throw new Error(`approval failed: ${approved.status} ${JSON.stringify(approved.body)}`)
  const conn = await device.connect(server.wsUrl, { ...connect, token: server.config.gatewayToken, scopes: approveScopes ?? scopes })
  if (conn.res.ok !== true) throw new Error(`connect after approval failed: ${JSON.stringify(conn.res)}`)
  const hello = conn.res.payload
  const deviceToken = hello.auth?.deviceToken
  if (typeof deviceToken !== 'string') throw new Error(`no device token in hello-ok: ${JSON.stringify(hello.auth)}`)
  if (teardown !== undefined) teardown.teardown(async () => { await conn.socket.close() })
  else if (!keepOpen) await conn.socket.close()
  return { device, deviceToken, hello, conn, socket: conn.socket, requestId }
}

/** Opens a connection with the device's own device token. */
export async function connectWithDeviceToken (server: PairingServer, paired: PairedTestDevice, scopes: string[], opts: ConnectOptions = {}): Promise<ConnectResult> {
  const conn = await paired.device.connect(server.wsUrl, { ...opts, deviceToken: paired.deviceToken, scopes })
  if (conn.res.ok !== true) throw new Error(`connect with device token failed: ${JSON.stringify(conn.res)}`)
  return conn
}
