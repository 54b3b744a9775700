#!/usr/bin/env bash
# The tables of perf/storms.md from a perf/device/storm.sh results folder (RES/env.txt, RES/MODE/loadgen.txt,
# uptime.txt, metrics-N.txt): bash + awk only, so it runs on the device and here on the returned tarball.
#   perf/device/storm-summary.sh RES > summary.md
set -uo pipefail
R=$1
# row NAME: "count p50 p90 p99 p99.9 max" of a latency row of loadgen.txt
row() { awk -v n="$2" '$1 == n { print $2, $3, $4, $5, $6, $7; f = 1; exit } END { if (!f) print "? ? ? ? ? ?" }' "$1"; }
ms() { awk -v x="$1" 'BEGIN { if (x == "?" || x == "") print "?"; else printf "%\047.0f\n", x }'; }
num() { awk -v x="$1" 'BEGIN { if (x == "?" || x == "") print "?"; else printf "%\047d\n", x }'; }
load() { awk -F'load average: ' -v w="$2" '$0 ~ "^uptime " w { split($2, a, ","); print a[1] + 0; exit }' "$1/uptime.txt" 2>/dev/null; }
# field after a word on a loadgen.txt line: grab FILE PREFIX REGEX -> first capture-like match (number)
grab() { awk -v p="$2" -v re="$3" 'index($0, p) == 1 { if (match($0, re)) { s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s); print s; exit } }' "$1"; }

echo "# Reconnect storms on the device: $(awk '/^date_utc/ { print $2 }' "$R/env.txt" 2>/dev/null)"
echo
echo '```'
cat "$R/env.txt" 2>/dev/null
echo '```'
echo
MODES=$(for m in baseline kill1 kill3; do [ -f "$R/$m/loadgen.txt" ] && echo "$m"; done)
BASE_UNAFF=?
[ -f "$R/baseline/loadgen.txt" ] && BASE_UNAFF=$(row "$R/baseline/loadgen.txt" question_delivery_unaffected | cut -d' ' -f4)

echo "## The game without a kill (is it a game at this count?)"
echo
echo "| run | players finished | load | answer → ack p50 / p99 | question delivery p99 | ping round trip p99 | answers too late | cpu (game window, % of one core) |"
echo "|---|---|---|---|---|---|---|---|"
for m in $MODES; do
  L=$R/$m/loadgen.txt
  read -r _ a50 _ a99 _ _ <<< "$(row "$L" answer_ack)"
  read -r _ _ _ q99 _ _ <<< "$(row "$L" question_delivery)"
  read -r _ _ _ p99 _ _ <<< "$(row "$L" ping_rtt)"
  fin=$(grab "$L" "players:" "^players: [0-9]+"); unf=$(grab "$L" "players:" "[0-9]+ unfinished")
  late=$(grab "$L" "errors:" "late_answer=[0-9]+")
  cpu=$(awk '/^cpu game/ { sub(/^cpu game /, ""); sub(/ \| not ours.*/, ""); gsub(/\|/, ";"); print; exit }' "$L")
  echo "| $m | $(num "${fin:-?}") ($(num "${unf:-?}") unfinished) | $(load "$R/$m" before) → $(load "$R/$m" after) | $(ms "$a50") / **$(ms "$a99") ms** | $(ms "$q99") ms | $(ms "$p99") ms | $(num "${late:-0}") | ${cpu:-?} |"
done
echo
echo "## The storms (1 and 3 of the edge processes SIGKILLed 3 s into question 1, against the baseline)"
echo
echo "| run | load | players whose socket died | reconnect p50 / p99 / max | unaffected question delivery p99 | missed / dup / out of order | answers without an outcome | upgrades refused (admission) | loadgen exit (its SLOs) |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A REC99 RATIO EVENTS NOOUT BACK
for m in $MODES; do
  L=$R/$m/loadgen.txt
  read -r rc r50 _ r99 _ rmax <<< "$(row "$L" reconnect)"
  read -r _ _ _ u99 _ _ <<< "$(row "$L" question_delivery_unaffected)"
  ok=$(grab "$L" "players:" "reconnects [0-9]+ ok"); failed=$(grab "$L" "players:" "[0-9]+ failed")
  miss=$(grab "$L" "room seq:" "[0-9]+ missed"); dup=$(grab "$L" "room seq:" "[0-9]+ duplicated")
  ooo=$(grab "$L" "room seq:" "[0-9]+ out of order")
  noout=$(grab "$L" "answer outcomes:" "[0-9]+ without an outcome"); resent=$(grab "$L" "answer outcomes:" "^answer outcomes: [0-9]+")
  already=$(grab "$L" "answer outcomes:" "[0-9]+ of them already")
  acked=$(grab "$L" "delivery:" "[0-9]+ acked")
  refused=$(cat "$R/$m"/metrics-*.txt 2>/dev/null | awk '/^ringside_edge_admission_refusals_total/ { s += $NF } END { printf "%d", s }')
  exitc=$(awk '/^loadgen exit/ { print $3 }' "$L")
  slofail=$(grep -c '^SLO FAILED' "$L")
  ratio=$(awk -v u="$u99" -v b="$BASE_UNAFF" 'BEGIN { if (u == "?" || b == "?" || b + 0 == 0) print "?"; else printf "%.2f", u / b }')
  if [ "$m" = baseline ]; then died=0; rec="—"; ratio_s=""
  else
    died="$(num "$((${ok:-0} + ${failed:-0}))") ($(num "${ok:-0}") back, $(num "${failed:-0}") failed)"
    rec="$(ms "$r50") / **$(ms "$r99")** / $(ms "$rmax") ms"; ratio_s=" (**${ratio}×**)"
  fi
  out="$(num "${noout:-?}")"
  [ "$m" = baseline ] && out="$out ($(num "${acked:-?}") acked)" || out="**$out** (${resent:-?} resent, ${already:-?} \`already_answered\`)"
  echo "| $m | $(load "$R/$m" before) → $(load "$R/$m" after) | $died | $rec | $(ms "$u99") ms$ratio_s | ${miss:-?} / ${dup:-?} / ${ooo:-?} | $out | $refused | ${exitc:-none}$([ "$slofail" -gt 0 ] && echo " ($slofail failed)") |"
  REC99[$m]=$r99; RATIO[$m]=$ratio; EVENTS[$m]="${miss:-?}/${dup:-?}/${ooo:-?}"; NOOUT[$m]=${noout:-?}; BACK[$m]="${ok:-0}/${failed:-?}"
done
echo
verdict() { if [ "$1" = yes ]; then echo "**met**$2"; elif [ "$1" = no ]; then echo "**not met**$2"; else echo "? (no data)"; fi; }
yn() { awk -v c="$1" 'BEGIN { print c }'; }
echo "| goal (issue 13 item 2) | 1 killed | 3 killed |"
echo "|---|---|---|"
for g in events outcome back ratio; do
  line=""
  for m in kill1 kill3; do
    if [ ! -f "$R/$m/loadgen.txt" ]; then line="$line | ? (not run)"; continue; fi
    case $g in
      events) [ "${EVENTS[$m]}" = "0/0/0" ] && v=yes || v=no; d=": ${EVENTS[$m]}" ;;
      outcome) [ "${NOOUT[$m]}" = 0 ] && v=yes || v=no; d=": ${NOOUT[$m]}" ;;
      back) v=$(awk -v p="${REC99[$m]}" -v f="${BACK[$m]#*/}" 'BEGIN { if (p == "?") print "?"; else print (p <= 5000 && f == 0) ? "yes" : "no" }')
            d=": p99 $(ms "${REC99[$m]}") ms, ${BACK[$m]#*/} failed" ;;
      ratio) v=$(awk -v r="${RATIO[$m]}" 'BEGIN { if (r == "?") print "?"; else print (r <= 2) ? "yes" : "no" }'); d=": ${RATIO[$m]}×" ;;
    esac
    line="$line | $(verdict "$v" "$d")"
  done
  case $g in
    events) name="0 missed / duplicated / out-of-order room events" ;;
    outcome) name="0 answers without an outcome" ;;
    back) name="every affected player back in ≤ 5 s (p99), none failed" ;;
    ratio) name="unaffected question delivery p99 ≤ 2× the baseline's" ;;
  esac
  echo "| $name$line |"
done
echo
awk -v b="$BASE_UNAFF" 'BEGIN { exit !(b != "?" && b + 0 < 1) }' && echo "Note: the baseline's unaffected delivery p99 is under 1 ms (sealed questions arrived before their \`showAt\`), so the ratio compares two near-zero figures." && echo
echo "Raw: storm-results.tar.gz (env.txt; per run loadgen.txt, report.json.gz, total.hlog.gz, uptime.txt, metrics-N.txt, rates.txt, redis-info.txt, storm.out)."
