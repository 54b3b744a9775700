#!/usr/bin/env bash
# The test command: every test of the workspace, against real redis-server processes that the tests start
# themselves on free ports (a standalone server and a 3-primary cluster). Never touches a Redis on 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The harness prints the servers and clusters it starts; show them.
exec cargo test --workspace --all-targets "$@" -- --nocapture
