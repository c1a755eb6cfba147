// Variables that look like a setting of this service but are not one (STORE_FIEL): each is a line of the configuration message.

/** Variables of the platform, the shell, Node, npm and libpq: never a setting of ours, however close a name. */
const FOREIGN_NAMES = new Set(['PATH', 'HOME', 'HOSTNAME', 'HOSTTYPE', 'TERM', 'USER', 'USERNAME', 'LOGNAME', 'LANG', 'LANGUAGE', 'SHELL', 'PWD', 'OLDPWD',
  'SHLVL', 'TZ', 'TMPDIR', 'TMP', 'TEMP', 'MAIL', 'EDITOR', 'PAGER', 'COLOR', 'COLORTERM', 'FORCE_COLOR', 'NO_COLOR', 'DEBUG', 'CI', '_',
  'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'UV_THREADPOOL_SIZE', 'OPENSSL_CONF', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE'])
const FOREIGN_PREFIXES = ['PG', 'NODE', 'NPM_', 'LC_', 'XDG_', 'SSL_', 'SSH_', 'GIT_', 'TAP', '_TAPJS_', 'TS_NODE_', 'KUBERNETES_', 'OTEL_', 'AWS_', 'DOCKER_']

/**
 * What Kubernetes injects for every Service of the namespace (unless `enableServiceLinks: false`):
 * `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT=tcp://...` and
 * `<SVC>_PORT_<n>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]`. A Service named "store" or "mqtt" would
 * otherwise look like settings of ours.
 */
const SERVICE_LINK_NAME = /^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)$/
const SERVICE_LINK_VALUE = /^(tcp|udp|sctp):\/\/[^\s/]+:[0-9]+$/i

/** True when `value` of the variable `name` is what Kubernetes sets for a Service's `<SVC>_PORT`. */
export function isServiceLink (name: string, value: string | undefined): boolean {
  return name.endsWith('_PORT') && value !== undefined && SERVICE_LINK_VALUE.test(value.trim())
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions), given up past `max`. */
export function editDistance (a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1
  let before = new Array<number>(b.length + 1).fill(0)
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    let best = i
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min((previous[j] as number) + 1, (row[j - 1] as number) + 1, (previous[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1)
      row.push(d)
      best = Math.min(best, d)
    }
    if (best > max) return max + 1
    before = previous
    previous = row
  }
  return previous[b.length] as number
}

function isForeign (name: string, value: string | undefined): boolean {
  return FOREIGN_NAMES.has(name) || FOREIGN_PREFIXES.some((prefix) => name.startsWith(prefix)) ||
    SERVICE_LINK_NAME.test(name) || isServiceLink(name, value)
}

/**
 * The setting `name` probably meant, among ours with the same first word or a small edit away:
 * the one that has most of its words (TLS_CA_FILE: TLS_CLIENT_CA_FILE), then the fewest edits,
 * then the longest common start.
 */
function nearest (name: string, known: readonly string[]): string | undefined {
  const words = name.split('_')
  let best: { name: string, rank: [number, number, number] } | undefined
  for (const candidate of known) {
    const samePrefix = candidate.startsWith(`${words[0] as string}_`)
    const limit = candidate.length >= 6 ? 2 : 1
    const distance = editDistance(name, candidate, samePrefix ? Number.MAX_SAFE_INTEGER : limit)
    if (!samePrefix && distance > limit) continue
    const theirs = candidate.split('_')
    const rank: [number, number, number] = [words.filter((word) => !theirs.includes(word)).length, distance, -commonStart(name, candidate)]
    if (best === undefined || isBefore(rank, best.rank)) best = { name: candidate, rank }
  }
  return best?.name
}

function commonStart (a: string, b: string): number {
  let n = 0
  while (n < a.length && a[n] === b[n]) n++
  return n
}

function isBefore (a: readonly number[], b: readonly number[]): boolean {
  const i = a.findIndex((value, index) => value !== b[index])
  return i !== -1 && (a[i] as number) < (b[i] as number)
}

/**
 * One line for each variable of `env` that is not in `known` but is close to a name in it: the
 * same first word (STORE_, RATE_, ...) or an edit distance of at most 2 (1 for names under 6
 * characters), letter case ignored. Platform variables and Kubernetes service links are left
 * alone. Names only: a value is never quoted.
 */
export function unknownSettings (env: Readonly<Record<string, string | undefined>>, known: readonly string[]): string[] {
  const ours = new Set(known)
  const lines: string[] = []
  for (const [given, value] of Object.entries(env)) {
    const name = given.toUpperCase()
    if ((ours.has(given)) || isForeign(name, value)) continue
    const meant = nearest(name, known)
    if (meant !== undefined) lines.push(`  ${given}: is not a setting of this service; did you mean ${meant}?`)
  }
  return lines
}
