#!/usr/bin/env bash
# The figures of a perf/device/run.sh output directory as markdown, in perf/edge.md's table format.
#   perf/device/summary.sh DIR > DIR/summary.md      (run.sh calls it; bash + awk only)
set -uo pipefail
D=$1
HERE=$(cd "$(dirname "$0")" && pwd)
flat() { [ -f "$1/lg/report.json" ] && awk -f "$HERE/flatten.awk" "$1/lg/report.json" > "$1/report.flat"; }
v() { awk -v k="$2" '$1 == k { print substr($0, length($1) + 2); found = 1; exit } END { if (!found) print "?" }' "$1/report.flat" 2>/dev/null || echo "?"; }
# sum of cpu_s of the processes named $3 in the cpu window $2, and that window's wall_s
win_cpu() {
  awk -v w="$2" -v n="$3" '
    { split($1, a, "."); }
    $1 ~ /^cpu\[[0-9]+\]\.name$/ && $2 == w { split($1, b, "."); want = b[1] }
    { lines[NR] = $0 }
    END {
      for (i = 1; i <= NR; i++) {
        split(lines[i], kv, " "); split(kv[1], p, ".")
        if (p[1] != want) continue
        if (kv[1] == want ".wall_s") wall = kv[2]
        if (p[2] ~ /^processes\[/ && p[3] == "name" && kv[2] == n) names[p[2]] = 1
        if (p[2] ~ /^processes\[/ && p[3] == "cpu_s") cpu[p[2]] = kv[2]
      }
      for (k in names) s += cpu[k]
      printf "%.2f %.2f\n", s, wall
    }' "$1/report.flat" 2>/dev/null
}
# Frames the edge wrote in a phase (all processes): its counter at the phase's end, less what it was when
# the phase began (edge-metrics-before.txt; the counter runs since the edge started).
phase_frames() {
  local before=/dev/null
  [ -f "$1/edge-metrics-before.txt" ] && before="$1/edge-metrics-before.txt"
  awk 'FNR == 1 { sign = (FILENAME ~ /before/) ? -1 : 1 } /^ringside_edge_frames_out_total/ { s += sign * $NF }
    END { printf "%.0f", s }' "$1/edge-metrics.txt" "$before" 2>/dev/null
}
fmt() { awk -v x="$1" 'BEGIN { if (x == "?" || x == "") print "?"; else if (x + 0 >= 100) printf "%\047.0f\n", x; else printf "%.1f\n", x }'; }

echo "# Device run: $(awk '/^date_utc/ { print $2 }' "$D/env.txt")"
echo
echo '```'
cat "$D/env.txt"
echo '```'
echo

if [ -f "$D/hold/lg/report.json" ]; then
  flat "$D/hold"
  H=$D/hold
  held=$(v "$H" counters.session_acks); asked=$(v "$H" counters.sockets_attempted)
  read -r setup_cpu setup_wall <<< "$(win_cpu "$H" setup edge)"
  read -r hold_cpu hold_wall <<< "$(win_cpu "$H" hold edge)"
  [ -z "${hold_wall:-}" ] || [ "$hold_wall" = "0.00" ] && read -r hold_cpu hold_wall <<< "$(win_cpu "$H" game edge)"
  # Memory from the 1 s samples: baseline (before loadgen), the hold (sockets ≥ 99 % of their peak), after.
  mem=$(awk -F, -v held="$held" '
    NR == 1 { next }
    $2 == "base" { br[++nb] = $3; ba[nb] = $4; bs[nb] = $11; if (!bm0) { bm0 = $1; bc0 = $5 } bm1 = $1; bc1 = $5 }
    $2 == "hold" { n++; r[n] = $3; a[n] = $4; s[n] = $11; t[n] = $8; c[n] = $5; ms[n] = $1; if ($8 > mx) mx = $8 }
    $2 == "after" { ar = $3; aa = $4 }
    function med(x, m,   i, j, y, tmp) { for (i = 1; i <= m; i++) y[i] = x[i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (y[j] < y[i]) { tmp = y[i]; y[i] = y[j]; y[j] = tmp }
      return y[int((m + 1) / 2)] }
    END {
      k = 0
      for (i = 1; i <= n; i++) if (t[i] >= 0.99 * mx) { k++; hr[k] = r[i]; ha[k] = a[i]; hs[k] = s[i]; hi[k] = i }
      if (nb == 0 || k == 0 || held + 0 == 0) { print "? ? ? ? ? ? ? ? ? ?"; exit }
      B = med(br, nb); BA = med(ba, nb); BS = med(bs, nb); R = med(hr, k); A = med(ha, k); S = med(hs, k)
      # edge CPU per second over the steady hold (first to last sample at >= 99 % of the sockets)
      # (from 3 s after the peak of sockets: the first 4 pings of a socket go 500 ms apart, for its clock offset)
      f = hi[1]; l = hi[k]
      for (i = 1; i <= k; i++) if (ms[hi[i]] >= ms[hi[1]] + 3000) { f = hi[i]; break }
      cps = (l > f) ? (c[l] - c[f]) / ((ms[l] - ms[f]) / 1000) : 0
      bps = (bm1 > bm0) ? (bc1 - bc0) / ((bm1 - bm0) / 1000) : 0
      printf "%.1f %.1f %.1f %.0f %.0f %.1f %.1f %.0f %.4f %d %.4f\n", B / 1024, R / 1024, ar / 1024, (R - B) * 1024 / held, \
        (A - BA) * 1024 / held, BA / 1024, A / 1024, (S - BS) * 1024 / held, cps, k, bps }' "$D/samples.csv")
  read -r base_mb hold_mb after_mb per_rss per_anon base_anon hold_anon slab_per cpu_ticks_s steady_n base_ticks_s <<< "$mem"
  tick=$(getconf CLK_TCK 2>/dev/null || echo 100)
  ping_ms=$(awk '/ping-interval-ms/ { for (i = 1; i <= NF; i++) if ($i == "--ping-interval-ms") print $(i + 1) }' "$H/lg/report.json" | head -1)
  ping_ms=${ping_ms:-5000}
  echo "## (a) Idle sockets: hold, memory per socket, connect rate, pings"
  echo
  echo "Load average: start $(cat "$H/loadavg-start.txt" 2>/dev/null), end $(cat "$H/loadavg-end.txt" 2>/dev/null)."
  echo "Command: \`$(v "$H" command | sed 's/^"//')\`"
  echo
  echo "| run | load avg | sockets held | edge RSS: baseline → hold → 10 s after close | per socket |"
  echo "|---|---|---|---|---|"
  echo "| connect + hold ${hold_wall:-?} s | $(cut -d' ' -f2-4 "$H/loadavg-start.txt" 2>/dev/null) → $(cut -d' ' -f2-4 "$H/loadavg-end.txt" 2>/dev/null) | $(fmt "$held") of $(fmt "$asked") | $base_mb → $hold_mb → $after_mb MB (RssAnon $base_anon → $hold_anon MB) | **$per_rss B** (anon $per_anon B) |"
  echo
  echo "| sockets connected | connect window | connect rate | connect p50 / p99 | session:ack p99 | edge CPU in the connect window | loadgen CPU | kernel slab per connection (both ends) |"
  echo "|---|---|---|---|---|---|---|---|"
  rate=$(awk -v n="$(v "$H" counters.sockets_connected)" -v w="$setup_wall" 'BEGIN { if (w > 0) printf "%\047.0f/s\n", n / w; else print "?" }')
  echo "| $(fmt "$(v "$H" counters.sockets_connected)") (failed $(v "$H" counters.connect_failed), upgrade failed $(v "$H" counters.upgrade_failed), gave up $(v "$H" counters.connect_gave_up)) | ${setup_wall} s | **$rate** | $(v "$H" latency_ms.connect.p50_ms) / $(v "$H" latency_ms.connect.p99_ms) ms | $(v "$H" latency_ms.session_ack.p99_ms) ms | $setup_cpu CPU-s | $(v "$H" 'cpu[0].loadgen_cpu_pct' | cut -c1-5) % of a core | $slab_per B |"
  echo
  pings_s=$(awk -v h="$held" -v m="$ping_ms" 'BEGIN { printf "%.0f", h * 1000 / m }')
  echo "| hold window | app pings sent in the run | pongs | ws pings | edge CPU: idle before the run → steady hold (from 3 s after the peak) | app pings/s expected (held ÷ interval $ping_ms ms) | edge CPU per ping: (hold − idle) ÷ pings | hold window edge CPU (loadgen's) |"
  echo "|---|---|---|---|---|---|---|---|"
  per_ping=$(awk -v c="$cpu_ticks_s" -v b="$base_ticks_s" -v t="$tick" -v p="$pings_s" 'BEGIN { if (p > 0) printf "%.2f µs", (c - b) / t * 1e6 / p; else print "?" }')
  cores=$(awk -v c="$cpu_ticks_s" -v t="$tick" 'BEGIN { printf "%.3f", c / t }')
  bcores=$(awk -v c="$base_ticks_s" -v t="$tick" 'BEGIN { printf "%.3f", c / t }')
  echo "| ${hold_wall} s | $(fmt "$(v "$H" counters.pings_sent)") | $(fmt "$(v "$H" counters.pongs_received)") | $(fmt "$(v "$H" counters.ws_pings_received)") | $bcores → $cores cores | $(fmt "$pings_s") | **$per_ping** (an upper bound: the sockets' other idle work is in it) | ${hold_cpu} CPU-s |"
  echo
  echo "ping RTT p50 / p99 / max: $(v "$H" latency_ms.ping_rtt.p50_ms) / $(v "$H" latency_ms.ping_rtt.p99_ms) / $(v "$H" latency_ms.ping_rtt.max_ms) ms; loadgen stopped by: $(v "$H" stopped_by); objectives passed: $(v "$H" slo_passed)."
  echo
fi

if [ -f "$D/fanout/lg/report.json" ]; then
  flat "$D/fanout"
  F=$D/fanout
  read -r game_cpu game_wall <<< "$(win_cpu "$F" game edge)"
  read -r redis_cpu _ <<< "$(win_cpu "$F" game redis)"
  spreads=$(awk '$1 ~ /^questions\[[0-9]+\]\.spread_ms$/ { printf "%s%.0f", sep, $2; sep = ", " }' "$F/report.flat")
  firsts=$(awk '$1 ~ /^questions\[[0-9]+\]\.first_after_start_ms$/ { printf "%s%.0f", sep, $2; sep = ", " }' "$F/report.flat")
  lasts=$(awk '$1 ~ /^questions\[[0-9]+\]\.last_after_start_ms$/ { printf "%s%.0f", sep, $2; sep = ", " }' "$F/report.flat")
  gi=$(awk '$1 ~ /^cpu\[[0-9]+\]\.name$/ && $2 == "game" { split($1, b, "."); print b[1] }' "$F/report.flat")
  rev="$(v "$F" latency_ms.reveal_delivery.p99_ms) ms"
  [ "$(v "$F" latency_ms.reveal_delivery.count)" = 0 ] && rev="none after the deadline ($(v "$F" counters.reveals_before_deadline) came early: everyone had answered; reveal spread p99 $(v "$F" latency_ms.reveal_spread.p99_ms) ms)"
  frames=$(phase_frames "$F")
  echo "## (b) Fan-out of one question to one room"
  echo
  echo "Quiz \`lg-3\` (3 questions of 10 s, JSON, pings off), as perf/edge.md §3–§4. Load average: start"
  echo "$(cat "$F/loadavg-start.txt" 2>/dev/null), end $(cat "$F/loadavg-end.txt" 2>/dev/null)."
  echo "Command: \`$(v "$F" command)\`"
  echo
  echo "Fair start sends a question ahead of its start when the countdown and reveal pause are ≥ 1 s (the"
  echo "default; \`--no-lead\` turns it off): then every receipt comes before the start, delivery reads 0 and"
  echo "**the spread (first → last receipt) is the fan-out time**; the keys' lead says whether it ended in time."
  echo
  echo "| run | joined | question delivery p50 / p90 / p99 / max | spread per question | reveal delivery p99 | answer ack p50 / p99 | missed |"
  echo "|---|---|---|---|---|---|---|"
  echo "| $(v "$F" plan.players) players, one room | $(fmt "$(v "$F" delivery.players_joined)") / $(fmt "$(v "$F" delivery.players)") | **$(v "$F" latency_ms.question_delivery.p50_ms) / $(v "$F" latency_ms.question_delivery.p90_ms) / $(v "$F" latency_ms.question_delivery.p99_ms) / $(v "$F" latency_ms.question_delivery.max_ms) ms** | $spreads ms | $rev | $(v "$F" latency_ms.answer_ack.p50_ms) / $(v "$F" latency_ms.answer_ack.p99_ms) ms | $(v "$F" counters.missed_events) of $(fmt "$(v "$F" counters.room_events)") room events |"
  echo
  echo "| first / last receipt after each question's start | display spread p99 | key lead p50 / min, keys late | game window | edge CPU in it | redis CPU | busy (softirq) of the CPUs the load generator sees | frames written (edge /metrics, all processes) |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| $firsts / $lasts ms | $(v "$F" latency_ms.display_spread.p99_ms) ms | $(v "$F" latency_ms.key_lead.p50_ms) / $(v "$F" latency_ms.key_lead.min_ms) ms, $(v "$F" counters.keys_late) | ${game_wall:-?} s | ${game_cpu:-?} CPU-s | ${redis_cpu:-?} CPU-s | $(v "$F" "$gi.machine.busy_pct" | cut -c1-6) % of $(v "$F" "$gi.machine.cores") ($(v "$F" "$gi.machine.softirq_pct" | cut -c1-5) %) | $(fmt "${frames:-?}") |"
  echo
  echo "Loadgen stopped by: $(v "$F" stopped_by); objectives passed: $(v "$F" slo_passed); errors $(v "$F" counters.errors), disconnects $(v "$F" counters.disconnects)."
  echo
fi
if [ -f "$D/game/lg/report.json" ]; then
  flat "$D/game"
  G=$D/game
  read -r game_cpu game_wall <<< "$(win_cpu "$G" game edge)"
  read -r redis_cpu _ <<< "$(win_cpu "$G" game redis)"
  gi=$(awk '$1 ~ /^cpu\[[0-9]+\]\.name$/ && $2 == "game" { split($1, b, "."); print b[1] }' "$G/report.flat")
  # the load generator's processes (coordinator and workers) in the game window
  lg_cpu=$(awk -v w="$gi" '
    index($1, w ".processes[") == 1 { split($1, p, "."); if (p[3] == "cpu_s") c[p[2]] = $2; if (p[3] == "loadgen" && $2 == "true") l[p[2]] = 1 }
    END { for (k in l) s += c[k]; printf "%.2f", s }' "$G/report.flat")
  read -r total_cpu _ <<< "$(win_cpu "$G" total edge)"
  frames=$(phase_frames "$G")
  # the edge's answer stages (perf/edge.md, "Where an answer's time goes"): mean ms of each
  stages=$(awk '/^ringside_edge_answer_stage_seconds_(sum|count)/ {
      match($0, /stage="[a-z_]+"/); st = substr($0, RSTART + 7, RLENGTH - 8)
      if ($1 ~ /_sum/) sum[st] += $NF; else cnt[st] += $NF }
    END { n = split("to_redis_thread batch_wait redis_call to_worker", o, " ")
      for (i = 1; i <= n; i++) printf "%s%s %.1f", (i > 1 ? ", " : ""), o[i], (cnt[o[i]] > 0 ? 1000 * sum[o[i]] / cnt[o[i]] : 0) }' \
    "$G/edge-metrics.txt" 2>/dev/null)
  echo "## (c) The game of issue 16 #2: $(v "$G" delivery.rooms) rooms of 100 players"
  echo
  echo "Quiz \`lg-3\`, sealed questions, joins at 1000/s, as \`perf/raw/edge-game.sh\` on the 2-core machine (perf/edge.md),"
  echo "but with the load generator on cores of its own. Goals: answer ack p99 ≤ 250 ms and ping round trip p99 ≤ 100 ms"
  echo "at 50K players (500 rooms). Load average: start $(cat "$G/loadavg-start.txt" 2>/dev/null), end"
  echo "$(cat "$G/loadavg-end.txt" 2>/dev/null)."
  echo "Command: \`$(v "$G" command)\`"
  echo
  echo "| players joined | answer ack p50 / p90 / p99 / max | ping round trip p50 / p99 / max | question spread p99 | display spread p99 | keys by showAt | missed / duplicated / out of order | answers without an outcome |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| $(fmt "$(v "$G" delivery.players_joined)") / $(fmt "$(v "$G" delivery.players)") | **$(v "$G" latency_ms.answer_ack.p50_ms) / $(v "$G" latency_ms.answer_ack.p90_ms) / $(v "$G" latency_ms.answer_ack.p99_ms) / $(v "$G" latency_ms.answer_ack.max_ms) ms** | **$(v "$G" latency_ms.ping_rtt.p50_ms) / $(v "$G" latency_ms.ping_rtt.p99_ms) / $(v "$G" latency_ms.ping_rtt.max_ms) ms** | $(v "$G" latency_ms.question_spread.p99_ms) ms | $(v "$G" latency_ms.display_spread.p99_ms) ms | $(v "$G" delivery.keys_in_time_ratio) | $(v "$G" counters.missed_events) / $(v "$G" counters.duplicate_events) / $(v "$G" counters.out_of_order_events) | $(v "$G" counters.answers_without_outcome) |"
  echo
  echo "| game window | edge CPU in it | edge CPU per frame written | redis CPU | loadgen CPU | busy (softirq) of the CPUs the load generator sees | edge answer stages since the edge started (all phases), mean ms |"
  echo "|---|---|---|---|---|---|---|"
  per_frame=$(awk -v c="${total_cpu:-0}" -v f="${frames:-0}" 'BEGIN { if (f > 0) printf "%.2f µs", c * 1e6 / f; else print "?" }')
  echo "| ${game_wall:-?} s | ${game_cpu:-?} CPU-s | $per_frame (the whole phase: ${total_cpu:-?} CPU-s, $(fmt "${frames:-?}") frames) | ${redis_cpu:-?} CPU-s | ${lg_cpu:-?} CPU-s | $(v "$G" "$gi.machine.busy_pct" | cut -c1-6) % of $(v "$G" "$gi.machine.cores") ($(v "$G" "$gi.machine.softirq_pct" | cut -c1-5) %) | ${stages:-?} |"
  echo
  echo "Loadgen stopped by: $(v "$G" stopped_by); objectives passed: $(v "$G" slo_passed); errors $(v "$G" counters.errors), disconnects $(v "$G" counters.disconnects)."
  echo
fi
echo "Raw: samples.csv (1 s), hold/, fanout/ and game/ (loadgen.txt, lg/report.json, lg/total.hlog), logs/."
