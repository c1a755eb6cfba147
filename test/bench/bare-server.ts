// Benchmark baseline: a bare Fastify 5 app with one POST route, no validation, no logger.
// Run by sign-throughput.ts as `node --import tsx test/bench/bare-server.ts`; listens on PORT
// (0: any free port) and prints `Server listening at <url>` once ready, as the real service does.
import Fastify from 'fastify'

const app = Fastify({ logger: false })

const answer = { mqttClientId: 'bench|securemode=2,signmethod=hmacsha1,timestamp=0|', mqttUsername: 'dev&prod', ok: true }

app.post('/sign', async () => answer)

const port = Number(process.env.PORT ?? 0)
const host = process.env.HOST ?? '127.0.0.1'
const address = await app.listen({ port, host })
process.stdout.write(`Server listening at ${address}\n`)

const stop = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
