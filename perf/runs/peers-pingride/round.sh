#!/bin/bash
# one round: $1 tag, then name=edge-binary ...; the floor runs last, into the first run's dir (it reads its sizes).
# The same as ../peers-ackkeepalive/round2.sh, which later grew per-binary environment variables
# (name=binary:ENV=V,...) and NOFLOOR; a round of plain name=binary pairs runs the same commands.
exec "$(dirname "$0")/../peers-ackkeepalive/round2.sh" "$@"
