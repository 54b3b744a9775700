#!/bin/bash
# redis-with-symbols.sh DIR: builds redis-server 7.0.15 (the version Debian ships, from Debian's own orig
# tarball) with its symbols, so that callgrind names Redis's and Lua's functions (Debian's binary is
# stripped). Then: PATH=DIR/redis-7.0.15/src:$PATH lua/perf/callgrind/run.sh OUT LIB LUA_BENCH 10000
set -euo pipefail
DIR=${1:-/tmp/redis-src}
mkdir -p "$DIR" && cd "$DIR"
curl -sSfO http://deb.debian.org/debian/pool/main/r/redis/redis_7.0.15.orig.tar.gz
tar xzf redis_7.0.15.orig.tar.gz
make -C redis-7.0.15 -j"$(nproc)" OPTIMIZATION=-O2 >build.log 2>&1
echo "$DIR/redis-7.0.15/src/redis-server"
