#!/usr/bin/env bash
# Makes sure this machine has what Ringside needs to build, run and test: a Rust toolchain, redis-server
# (Redis 7, for Functions, sharded pub/sub and cluster) and PostgreSQL (initdb/pg_ctl/psql). Idempotent; installs with apt-get when run as root.
set -euo pipefail

# install WHAT HINT PACKAGE...: apt-get install PACKAGE... as root; otherwise say what is missing (WHAT), how to
# install it, and HINT (another way, or ""), and fail.
install() {
  local what=$1 hint=$2
  shift 2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $* with apt-get ($what)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "setup: $what is missing. Install it with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
    [ -z "$hint" ] || echo "$hint" >&2
    exit 1
  fi
}

need_redis=0
command -v redis-server >/dev/null 2>&1 || need_redis=1
command -v redis-cli >/dev/null 2>&1 || need_redis=1
if [ "$need_redis" = 1 ] && [ -z "${REDIS_SERVER:-}" ]; then
  install "redis-server (7.0+)" "or set REDIS_SERVER=/path/to/redis-server and REDIS_CLI=/path/to/redis-cli" redis-server
fi

# PostgreSQL (the system of record; tests and the local stack start private instances with initdb on free
# ports and never use a server already running on 5432). Debian keeps initdb/pg_ctl in
# /usr/lib/postgresql/<version>/bin; PG_BIN names another directory.
pg_found=0
if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then pg_found=1; fi
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v psql >/dev/null 2>&1; then pg_found=1; fi
if [ "$pg_found" = 0 ]; then
  install "PostgreSQL (initdb, pg_ctl, psql)" "or set PG_BIN=/path/to/postgresql/bin" postgresql postgresql-client
fi

ver=$("${REDIS_SERVER:-redis-server}" --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
if [ -n "$ver" ] && [ "$ver" -lt 7 ]; then
  echo "setup: redis-server $ver found, Ringside needs Redis 7+ (Functions, sharded pub/sub)" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing. Install Rust from https://rustup.rs (or: apt-get install -y cargo)" >&2
  exit 1
fi

# The habits test.sh checks: rustfmt and clippy (rustup components), PyYAML for scripts/check-deploy.sh.
if command -v rustup >/dev/null 2>&1 && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  install "PyYAML (scripts/check-deploy.sh)" "" python3-yaml
fi

# The Prometheus test (scripts/prometheus-test.sh): Debian's prometheus binary, run on a free port with a
# temporary config (a system service the package may start is neither used nor touched).
if ! command -v prometheus >/dev/null 2>&1 && [ -z "${PROMETHEUS:-}" ]; then
  install "Prometheus (scripts/prometheus-test.sh)" "or set PROMETHEUS=/path/to/prometheus" prometheus
fi

# The browser test (webtest/): Debian's Chromium (driven by playwright-core, which downloads no browser), node
# and npm, and webtest's pinned npm packages.
# Only what is missing: a machine whose node comes from elsewhere (NodeSource's nodejs bundles npm and
# conflicts with Debian's npm package) must not be asked to install Debian's npm beside it.
browser_pkgs=()
command -v chromium >/dev/null 2>&1 || browser_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || browser_pkgs+=(chromium-driver)
command -v node >/dev/null 2>&1 || browser_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || browser_pkgs+=(npm)
if [ "${#browser_pkgs[@]}" -gt 0 ]; then
  install "the browser test's Chromium, ChromeDriver, node or npm" "" "${browser_pkgs[@]}"
fi
webtest="$(dirname "$0")/../webtest"
if [ ! -f "$webtest/node_modules/.package-lock.json" ] || [ "$webtest/package-lock.json" -nt "$webtest/node_modules/.package-lock.json" ]; then
  (cd "$webtest" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
