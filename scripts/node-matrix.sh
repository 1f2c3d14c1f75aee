#!/usr/bin/env bash
# Runs the JS tests (vitest) under other Node.js majors than the one on PATH.
#
#   scripts/node-matrix.sh [vitest args...]        # Node 22 and 24
#   NODE_MATRIX="22" scripts/node-matrix.sh __test__/smoke.test.mjs
#   NODE_MATRIX="18.17.0" scripts/node-matrix.sh      # a major or an exact version
#
# The Node binaries come from the npm registry's `node` package (its install
# script fetches the matching `node-<os>-<arch>` package, also from the
# registry), installed once per major under .cache/node<major>/ (git-ignored)
# and reused on later runs; npm's own cache makes a reinstall in a fresh clone
# cheap. Vitest runs its forks with the Node that runs it (process.execPath),
# and the tests spawn their child processes with process.execPath too, so the
# whole run, children included, is on that major.
# The addon must already be built (npm run build): N-API is ABI-stable, so the
# same .node serves every Node version.
set -euo pipefail
cd "$(dirname "$0")/.."

majors="${NODE_MATRIX:-22 24}" # majors or exact versions
cache=".cache"

node_for() {
  local major="$1" prefix="$cache/node$1"
  local bin="$prefix/node_modules/node/bin/node"
  if [[ ! -x "$bin" ]] || ! "$bin" --version 2>/dev/null | grep -Eq "^v${major//./\\.}(\.|$)"; then
    echo "== node-matrix: installing node@$major from the npm registry into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --prefer-offline --loglevel=error "node@$major" >&2
  fi
  if [[ ! -x "$bin" ]]; then
    echo "node-matrix: $bin is missing after installing node@$major (did npm skip the package's install script?)" >&2
    exit 1
  fi
  echo "$bin"
}

if [[ -z "${SESSION_WRITE_LOCK_NATIVE_PATH:-}" ]] && ! compgen -G 'session-write-lock.*.node' >/dev/null; then
  echo "node-matrix: no built addon (session-write-lock.<platform>.node); run npm run build first" >&2
  exit 1
fi

status=0
summary=()
for major in $majors; do
  bin="$(node_for "$major")"
  version="$("$bin" --version)"
  echo
  echo "== node-matrix: vitest under Node $version ($bin)"
  start=$(date +%s)
  if "$bin" node_modules/vitest/vitest.mjs run "$@"; then
    summary+=("Node $version: ok ($(($(date +%s) - start))s)")
  else
    summary+=("Node $version: FAILED ($(($(date +%s) - start))s)")
    status=1
  fi
done

echo
echo "== node-matrix: summary"
printf '  %s\n' "${summary[@]}"
exit $status
