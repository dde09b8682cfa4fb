#!/usr/bin/env node
// Connects to a scopegate gateway as a device, the way a channel bot or CLI
// would, and prints the outcome. Usage:
//   node examples/connect.mjs [--url ws://127.0.0.1:18789/] [--token GATEWAY_TOKEN]
//        [--scopes operator.read,operator.write] [--role operator] [--identity ./device-identity.json]
// The Ed25519 identity is created on first use and kept (mode 0600) in --identity.
// After the first approved connect, the device token is saved next to it and
// used instead of the gateway token.
import { createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.SCOPEGATE_WS_URL ?? 'ws://127.0.0.1:18789/' },
    token: { type: 'string', default: process.env.GATEWAY_TOKEN ?? '' },
    scopes: { type: 'string', default: 'operator.read' },
    role: { type: 'string', default: 'operator' },
    identity: { type: 'string', default: './device-identity.json' },
    platform: { type: 'string', default: process.platform }
  }
})

function loadIdentity (file) {
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'))
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const raw = publicKey.export({ format: 'jwk' }).x
  const identity = {
    deviceId: createHash('sha256').update(Buffer.from(raw, 'base64url')).digest('hex'),
    publicKey: raw,
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    deviceTokens: {}
  }
  writeFileSync(file, JSON.stringify(identity, null, 2), { mode: 0o600 })
  return identity
}

const identity = loadIdentity(args.identity)
const scopes = args.scopes.split(',').map((s) => s.trim()).filter(Boolean)
const deviceToken = identity.deviceTokens?.[args.role]
const ws = new WebSocket(args.url)

ws.on('message', (data) => {
  const frame = JSON.parse(data.toString())
  if (frame.type === 'event' && frame.event === 'connect.challenge') {
    const { nonce, ts } = frame.payload
    const signedToken = deviceToken ?? args.token
    const platform = args.platform.trim().toLowerCase()
    const text = ['v3', identity.deviceId, 'cli', 'cli', args.role, scopes.join(','), ts, signedToken, nonce, platform, ''].join('|')
    const signature = sign(null, Buffer.from(text), createPrivateKey(identity.privateKeyPem)).toString('base64url')
    ws.send(JSON.stringify({
      type: 'req',
      id: 'connect-1',
      method: 'connect',
      params: {
        minProtocol: 4,
        maxProtocol: 4,
        client: { id: 'cli', version: '0.1.0', platform, mode: 'cli' },
        role: args.role,
        scopes,
        auth: deviceToken ? { deviceToken } : { token: args.token },
        device: { id: identity.deviceId, publicKey: identity.publicKey, signature, signedAt: ts, nonce }
      }
    }))
    return
  }
  if (frame.type === 'res' && frame.id === 'connect-1') {
    if (!frame.ok) {
      console.log(`refused: ${frame.error.code} ${frame.error.message}`)
      if (frame.error.details) console.log(JSON.stringify(frame.error.details, null, 2))
      return
    }
    const { auth } = frame.payload
    console.log(`connected as ${identity.deviceId.slice(0, 8)}… role ${auth.role}, scopes [${auth.scopes.join(', ')}] via ${auth.method}`)
    if (auth.deviceToken) {
      identity.deviceTokens = { ...identity.deviceTokens, [args.role]: auth.deviceToken }
      writeFileSync(args.identity, JSON.stringify(identity, null, 2), { mode: 0o600 })
      console.log(`device token saved to ${args.identity}`)
    }
    ws.send(JSON.stringify({ type: 'req', id: 'health-1', method: 'health' }))
    return
  }
  if (frame.type === 'res' && frame.id === 'health-1') {
    console.log(`health: ${JSON.stringify(frame.payload ?? frame.error)}`)
    ws.close()
  }
})
ws.on('close', (code, reason) => console.log(`closed ${code} ${reason.toString()}`))
ws.on('error', (err) => { console.error(`cannot connect to ${args.url}: ${err.message}`); process.exitCode = 1 })
