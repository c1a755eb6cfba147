// Builds the OpenAPI document from the routes, exactly as the running service serves it.
import { buildApp } from './app.js'
import { loadConfig } from './config.js'

/** The spec as committed in openapi/openapi.json: pretty JSON with a final newline. */
export async function renderOpenApi (): Promise<string> {
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', STORE_WATCH: 'false' }))
  try {
    await app.ready()
    return JSON.stringify(app.swagger(), null, 2) + '\n'
  } finally {
    await app.close()
  }
}
