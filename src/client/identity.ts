import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { chmodSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * What the identity file holds (JSON, mode 0600). The same shape as
 * examples/connect.mjs writes, so both can use one file.
 */
export interface IdentityFile {
  /** Lowercase hex SHA-256 of the raw public key. */
  deviceId: string
  /** The raw 32-byte Ed25519 public key, base64url without padding. */
  publicKey: string
  privateKeyPem: string
  /** The device token per role, kept from the hello-ok that issued it. */
  deviceTokens: Record<string, string>
}

export function deviceIdOf (publicKey: string): string {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64url')).digest('hex')
}

function rawPublicKey (key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: 'jwk' })
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 key')
  return jwk.x
}

/**
 * A device's Ed25519 identity and its device tokens, kept in one file.
 * `load` creates the file (and its directory) on first use; every write
 * replaces it atomically with mode 0600.
 */
export class DeviceIdentity {
  readonly #privateKey: KeyObject
  #data: IdentityFile

  private constructor (readonly path: string, data: IdentityFile) {
    this.#data = data
    this.#privateKey = createPrivateKey(data.privateKeyPem)
  }

  /** Loads the identity at `path`, or creates a new one there. */
  static load (path: string): DeviceIdentity {
    try {
      return DeviceIdentity.#read(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const { privateKey } = generateKeyPairSync('ed25519')
    const publicKey = rawPublicKey(privateKey)
    const data: IdentityFile = {
      deviceId: deviceIdOf(publicKey),
      publicKey,
      privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      deviceTokens: {}
    }
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const tmp = writeTemp(path, data)
    try {
      // link fails if another process created the file meanwhile: then its identity wins.
      linkSync(tmp, path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      return DeviceIdentity.#read(path)
    } finally {
      rmSync(tmp, { force: true })
    }
    return new DeviceIdentity(path, data)
  }

  static #read (path: string): DeviceIdentity {
    const text = readFileSync(path, 'utf8')
    let parsed: Partial<IdentityFile>
    try {
      parsed = JSON.parse(text) as Partial<IdentityFile>
    } catch {
      throw new Error(`identity file ${path} is not JSON`)
    }
    const { deviceId, publicKey, privateKeyPem } = parsed
    if (typeof publicKey !== 'string' || typeof privateKeyPem !== 'string' || typeof deviceId !== 'string') {
      throw new Error(`identity file ${path} lacks deviceId, publicKey or privateKeyPem`)
    }
    let derived: string
    try {
      derived = rawPublicKey(createPrivateKey(privateKeyPem))
    } catch (err) {
      throw new Error(`identity file ${path}: privateKeyPem is not an Ed25519 private key`, { cause: err })
    }
    if (derived !== publicKey) throw new Error(`identity file ${path}: publicKey does not belong to privateKeyPem`)
    if (deviceIdOf(publicKey) !== deviceId) throw new Error(`identity file ${path}: deviceId is not sha256(publicKey)`)
    // A secret readable by others: take it back to 0600.
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600)
    const tokens = typeof parsed.deviceTokens === 'object' && parsed.deviceTokens !== null ? parsed.deviceTokens : {}
    return new DeviceIdentity(path, { ...parsed, deviceId, publicKey, privateKeyPem, deviceTokens: { ...tokens } })
  }

  get deviceId (): string {
    return this.#data.deviceId
  }

  get publicKey (): string {
    return this.#data.publicKey
  }

  /** base64url Ed25519 signature over the UTF-8 text. */
  sign (text: string): string {
    return sign(null, Buffer.from(text, 'utf8'), this.#privateKey).toString('base64url')
  }

  deviceToken (role: string): string | undefined {
    const token = this.#data.deviceTokens[role]
    return typeof token === 'string' && token !== '' ? token : undefined
  }

  /** Keeps (or, with undefined, forgets) the device token for `role`, on disk at once. */
  setDeviceToken (role: string, token: string | undefined): void {
    const deviceTokens = { ...this.#data.deviceTokens }
    if (token === undefined) delete deviceTokens[role]
    else deviceTokens[role] = token
    this.#data = { ...this.#data, deviceTokens }
    const tmp = writeTemp(this.path, this.#data)
    renameSync(tmp, this.path)
  }
}

function writeTemp (path: string, data: IdentityFile): string {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  chmodSync(tmp, 0o600)
  return tmp
}
