#!/usr/bin/env bash
# Builds the self-contained package that perf/device/run.sh runs on a lent machine (no cargo, no Redis,
# nothing reachable): release binaries of ringside-edge, -engine, -quiz (the Functions library loader and
# quiz importer) and -loadgen, plus this machine's redis-server and redis-cli, stripped, into
# perf/device/pack/ (ignored by git; the device tool carries it: `carry: ["perf/device/pack"]`).
#
# Every shared library the binaries need comes along, glibc and its loader included, and each binary's
# ELF interpreter is rewritten in place to /tmp/ringside-pack/ld.so (run.sh points that link at the
# pack): the package then runs the same on any x86-64 Linux kernel, whatever its distribution's glibc,
# and nothing of the device's own libraries is mixed in. Libraries are found through LD_LIBRARY_PATH,
# which run.sh sets only on the commands it starts from the pack (a system binary given our glibc
# would break).
#
#   perf/device/pack.sh            # build (under /work/bin/build-lock when it exists) and pack
#   NO_BUILD=1 perf/device/pack.sh # pack what target/release already holds
# Prints the package's size; fails if it is over 64 MiB (the device tool's carry limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PACK=perf/device/pack
LIMIT=$((64 * 1024 * 1024))
INTERP=/tmp/ringside-pack/ld.so
BINS=(ringside-edge ringside-engine ringside-quiz ringside-loadgen)
LOCK=()
[ -x /work/bin/build-lock ] && LOCK=(/work/bin/build-lock)
# The binaries are built from a commit (REV, default HEAD), exported with `git archive` to $SRC, not from
# the working tree (others may be mid-edit there), in their own target dir (seeded once from
# target/release so the dependencies are not compiled again).
REV=${REV:-HEAD}
COMMIT=$(git rev-parse --short "$REV")
SRC=${PACK_SRC:-/tmp/ringside-pack-src}
export CARGO_TARGET_DIR=${PACK_TARGET:-$ROOT/target/device-pack}
if [ -z "${NO_BUILD:-}" ]; then
  rm -rf "$SRC"; mkdir -p "$SRC"
  git archive "$REV" | tar -x -C "$SRC"
  if [ ! -d "$CARGO_TARGET_DIR/release" ] && [ -d target/release/deps ]; then
    mkdir -p "$CARGO_TARGET_DIR"; cp -a target/release "$CARGO_TARGET_DIR/release"
  fi
  (cd "$SRC" && "${LOCK[@]}" cargo build --release -p ringside-edge -p ringside-engine -p ringside-lua -p ringside-loadgen)
  echo "$COMMIT" > "$CARGO_TARGET_DIR/release/.pack-commit"
fi
COMMIT=$(cat "$CARGO_TARGET_DIR/release/.pack-commit" 2>/dev/null || echo "unknown")
command -v redis-server >/dev/null || { echo "pack.sh: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
rm -rf "$PACK"
mkdir -p "$PACK/bin" "$PACK/lib"
for b in "${BINS[@]}"; do
  cp "$CARGO_TARGET_DIR/release/$b" "$PACK/bin/$b"
done
cp "$(readlink -f "$(command -v redis-server)")" "$PACK/bin/redis-server"
cp "$(readlink -f "$(command -v redis-cli)")" "$PACK/bin/redis-cli"
chmod u+w "$PACK"/bin/*
strip --strip-unneeded "$PACK"/bin/* 2>/dev/null || strip "$PACK"/bin/*
# Libraries: the union of what ldd resolves for every binary, and the loader itself.
LOADER=
for b in "$PACK"/bin/*; do
  while read -r line; do
    # "libx.so.1 => /path (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    path=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; exit } }' <<<"$line")
    [ -n "$path" ] || continue
    case "$line" in
      *"=>"*) cp -L -n "$path" "$PACK/lib/$(basename "$path")" ;;
      *) LOADER=$path ;;
    esac
  done < <(ldd "$b")
done
[ -n "$LOADER" ] || { echo "pack.sh: no ELF loader found by ldd" >&2; exit 1; }
cp -L "$LOADER" "$PACK/ld.so"
chmod u+w "$PACK"/lib/* "$PACK/ld.so"
strip --strip-unneeded "$PACK"/lib/* 2>/dev/null || true
# Point each binary's PT_INTERP at $INTERP, in place (the new path is shorter than the old one).
python3 - "$INTERP" "$PACK"/bin/* <<'PY'
import struct, sys
new = sys.argv[1].encode()
for path in sys.argv[2:]:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        assert data[:4] == b"\x7fELF" and data[4] == 2, path
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        for i in range(phnum):
            off = phoff + i * phentsize
            ptype, = struct.unpack_from("<I", data, off)
            if ptype == 3:  # PT_INTERP
                p_offset, = struct.unpack_from("<Q", data, off + 8)
                p_filesz, = struct.unpack_from("<Q", data, off + 32)
                assert len(new) + 1 <= p_filesz, (path, p_filesz)
                data[p_offset:p_offset + p_filesz] = new + b"\0" * (p_filesz - len(new))
                break
        else:
            raise SystemExit(f"{path}: no PT_INTERP")
        f.seek(0)
        f.write(data)
PY
# What the pack was made from, for the report.
{
  echo "made_at_utc $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "built_from $COMMIT (git archive of that commit; $CARGO_TARGET_DIR)"
  echo "rustc $(rustc --version)"
  echo "redis $("$(command -v redis-server)" --version)"
  echo "glibc $(ldd --version | head -1)"
  echo "host $(. /etc/os-release && echo "$PRETTY_NAME")"
} > "$PACK/PACKINFO"
# Check it runs from the pack alone.
ln -sfn "$ROOT/$PACK" /tmp/ringside-pack
for b in "${BINS[@]}"; do
  env -i LD_LIBRARY_PATH=/tmp/ringside-pack/lib "$PACK/bin/$b" --help >/dev/null
done
env -i LD_LIBRARY_PATH=/tmp/ringside-pack/lib "$PACK/bin/redis-server" --version
size=$(du -sb "$PACK" | cut -f1)
ls -l "$PACK/bin" "$PACK/lib" | awk 'NF > 5 { printf "%10d %s\n", $5, $NF }'
echo "pack: $PACK $size bytes ($((size / 1024 / 1024)) MiB; limit 64 MiB)"
[ "$size" -le "$LIMIT" ] || { echo "pack.sh: over 64 MiB" >&2; exit 1; }
