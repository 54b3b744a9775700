#!/usr/bin/env bash
# The test command: every test of the workspace, against real redis-server processes that the tests start
# themselves on free ports (a standalone server and a 3-primary cluster). Never touches a Redis on 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Habits first (they fail before the long tests): formatting, clippy with every warning an error (a `// SAFETY:` on
# every unsafe block: Cargo.toml [workspace.lints]), and deploy/ (units, manifests, dashboard, settings).
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
./scripts/check-deploy.sh
# The harness prints the servers and clusters it starts; show them.
cargo test --workspace --all-targets "$@" -- --nocapture
# The edge's game suite once more on the epoll fallback (the run above used io_uring where the kernel allows it).
# `--workspace` keeps the features of the run above, so nothing is rebuilt: this costs the suite's run time only.
RINGSIDE_EDGE_DRIVER=legacy cargo test --workspace --test edge game:: -- --nocapture
# Fuzz smoke (fuzz/ is its own workspace): build, replay every seed and crash regression, 5 s per target.
# Long runs and results: fuzz/README.md, perf/fuzz.md.
FUZZ_SANITIZER=none ./scripts/fuzz.sh smoke 5
# The browser suite: a full game of web/ in Chromium against the debug builds (webtest/run.mjs).
node webtest/run.mjs
# The Grafana dashboard against a real Prometheus scraping a local stack (about 15 s; webtest/prometheus.mjs).
node webtest/prometheus.mjs
