// /docs in a real headless Chromium: "Try it out" then "Execute" with the pre-filled body signs the example device.
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { EXAMPLE_PASSWORDS, buildTestApp } from '../helper.js'

/** Debian's chromium package (playwright-core downloads no browser, and this machine could not). */
const CHROMIUM = '/usr/bin/chromium'

/** No sandbox (root in CI), and nothing that reaches for the network beyond the test server. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

/**
 * Bound of each wait (browser start, page load, each selector): generous for a busy 2-core machine
 * running the whole suite in parallel (the file takes 2-4 s there), so that a page that never shows
 * what is awaited fails with the locator it waited for; tap's per-file timeout bounds the whole, and
 * Chromium does not outlive a test process that tap kills.
 */
const STEP_TIMEOUT_MS = 15_000

interface TryItOut {
  route: string
  /** The operation's block in Swagger UI has the id `operations-<tag>-<operationId>`. */
  tag: string
  operationId: string
  /** What the response body shown in the page must match (t.match): the pre-filled body signs as it is. */
  expected: object
}

/**
 * Every operation whose pre-filled body must work as it is. POST /sign/batch adds one entry, e.g.
 * `{ route: 'POST /sign/batch', tag: 'signing', operationId: 'signBatch', expected: { results: [{ mqttPassword: ... }] } }`.
 */
const OPERATIONS: TryItOut[] = [
  { route: 'POST /sign', tag: 'signing', operationId: 'sign', expected: { mqttPassword: EXAMPLE_PASSWORDS.hmacsha1, mqttUsername: 'test&123' } },
  { route: 'POST /sign/batch', tag: 'signing', operationId: 'signBatch', expected: { results: [{ ok: true, mqttPassword: EXAMPLE_PASSWORDS.hmacsha1 }], summary: { signed: 1 } } }
]

if (!existsSync(CHROMIUM)) {
  t.fail(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (.ci/run does so in CI)`)
} else {
  const app = await buildTestApp(t)
  const origin = await app.listen({ port: 0, host: '127.0.0.1' })
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: STEP_TIMEOUT_MS })
  // Registered after the app's teardown, so it runs first (tap tears down last in, first out).
  t.teardown(() => browser.close())

  for (const { route, tag, operationId, expected } of OPERATIONS) {
    t.test(`/docs – ${route}: Try it out, then Execute with the pre-filled body -> 200 and the example device's credentials`, async (t) => {
      const page = await browser.newPage()
      t.teardown(() => page.close())
      page.setDefaultTimeout(STEP_TIMEOUT_MS)
      page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
      await page.goto(`${origin}/docs/`)

      const operation = page.locator(`#operations-${tag}-${operationId}`)
      await operation.locator('.opblock-summary').click()
      await operation.getByRole('button', { name: 'Try it out' }).click()
      await operation.getByRole('button', { name: 'Execute' }).click()

      // The live response table appears once Swagger UI's fetch has been answered.
      const live = operation.locator('.live-responses-table .response')
      const status = (await live.locator('.response-col_status').innerText()).trim()
      const body = await live.locator('.highlight-code code').innerText()
      t.equal(status, '200', 'the page shows status 200', { body })
      t.match(JSON.parse(body), expected, 'the page shows the credentials of the example device')
    })
  }
}
