// The baseline: a bare `ws` server on the same machine. Echoes every text
// frame back; accepts and keeps connections like the gateway does.
import { WebSocketServer } from 'ws'

const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false })
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }))
  socket.on('error', () => {})
})
wss.on('listening', () => process.stdout.write(`listening ${wss.address().port}\n`))
// A clean exit on SIGTERM, so that --cpu-prof writes the baseline's profile too.
process.on('SIGTERM', () => process.exit(0))
