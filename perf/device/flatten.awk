# Flattens serde_json's pretty-printed JSON (report.json of ringside-loadgen) into "path value" lines,
# e.g. `latency_ms.question_delivery.p99_ms 1206.271`, `cpu[1].processes[0].name edge`, so that
# perf/device/run.sh can read a report with awk alone (the device has no python or jq).
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
function path(   p, i) {
  p = ""
  for (i = 1; i <= depth; i++) p = p name[i]
  return p
}
function scalar(k, v) {
  sub(/,$/, "", v)
  if (v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
  p = path() k
  sub(/^\./, "", p)
  print p, v
}
function child_name(k) {
  if (depth > 0 && isarr[depth]) { k = "[" idx[depth] "]"; idx[depth]++ } else k = "." k
  return k
}
{
  line = trim($0)
  if (line == "") next
  if (line ~ /^[}\]],?$/) { depth--; next }
  key = ""
  if (line ~ /^"/ && !(depth > 0 && isarr[depth])) {
    j = index(substr(line, 2), "\"")
    key = substr(line, 2, j - 1)
    line = trim(substr(line, j + 3))
  }
  if (line == "{" || line == "[") {
    n = (depth == 0) ? "" : child_name(key)
    depth++; name[depth] = n; isarr[depth] = (line == "["); idx[depth] = 0
    next
  }
  n = child_name(key)
  scalar(n, line)
}
