#!/usr/bin/env bash
# Checks deploy/ without a cluster or root: the systemd units (`systemd-analyze verify`, against stub
# binaries), `kubectl kustomize deploy/k8s` renders (when kubectl is present), every YAML file parses,
# the Grafana dashboard parses and names only metrics that the edge and engine really export, every
# RINGSIDE_* setting in the env example and the ConfigMap is read by some binary, and the edge's
# metrics container ports match RINGSIDE_EDGE_PROCESSES.
# Needs python3 with PyYAML (pip install pyyaml); systemd-analyze is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"
  for b in ringside-edge ringside-engine ringside-quiz ringside-control; do printf '#!/bin/sh\n' >"$tmp/bin/$b"; chmod +x "$tmp/bin/$b"; done
  for u in deploy/systemd/*.service; do sed "s#/usr/local/bin/#$tmp/bin/#g" "$u" >"$tmp/$(basename "$u")"; done
  # verify prints problems and exits non-zero on errors in the units it loads.
  out=$(cd "$tmp" && systemd-analyze verify ./*.service 2>&1 || true)
  if echo "$out" | grep -q 'ringside'; then
    echo "systemd-analyze verify:"; echo "$out"; exit 1
  fi
  echo "ok: systemd units verify"
else
  echo "skip: systemd-analyze not installed"
fi

if command -v kubectl >/dev/null; then
  n=$(kubectl kustomize deploy/k8s | grep -c '^kind:')
  echo "ok: kubectl kustomize deploy/k8s renders $n objects"
else
  echo "skip: kubectl not installed (kustomize build)"
fi

python3 - <<'PY'
import glob, json, re, sys
import yaml

fail = []
docs = {}
for f in sorted(glob.glob("deploy/**/*.y*ml", recursive=True)):
    try:
        docs[f] = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e:
        fail.append(f"{f}: {e}")
print(f"ok: {len(docs)} YAML files parse")

src = {p: open(p).read() for p in ["edge/src/metrics.rs", "engine/src/metrics.rs"]}
dash = json.load(open("deploy/dashboards/grafana-ringside.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
names = set()
for e in exprs:
    names |= set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", e))
for n in sorted(names):
    if n == "up":
        continue
    base = re.sub(r"_(bucket|sum|count)$", "", n)
    short = base.removeprefix("ringside_edge_")
    edge = n.startswith("ringside_edge_") and (base in src["edge/src/metrics.rs"] or f'"{short}"' in src["edge/src/metrics.rs"])
    engine = f'"{base}"' in src["engine/src/metrics.rs"]
    if not (edge or engine):
        fail.append(f"dashboard uses {n}, which neither edge/src/metrics.rs nor engine/src/metrics.rs exports")
print(f"ok: dashboard parses, {len(exprs)} queries over {len(names)} metric names")

# Every RINGSIDE_* key must be an env fallback of some binary (RINGSIDE_QUIZ_* feed the loader's command line).
code = "\n".join(open(p).read() for p in glob.glob("*/src/**/*.rs", recursive=True))
keys = set(re.findall(r"^#?\s*(RINGSIDE_[A-Z_]+)=", open("deploy/systemd/ringside.env.example").read(), re.M))
for d in docs["deploy/k8s/configmap.yaml"]:
    keys |= {k for k in d.get("data", {}) if k.startswith("RINGSIDE_")}
for k in sorted(keys):
    if k.startswith("RINGSIDE_QUIZ_"):
        continue
    if f'"{k}"' not in code:
        fail.append(f"setting {k} is read by no binary (no env = \"{k}\")")
print(f"ok: {len(keys)} settings checked against the binaries' env fallbacks")
# One Redis URL variable for every service: the engine's old names are deprecated aliases.
for k in sorted(keys & {"RINGSIDE_ENGINE_REDIS", "RINGSIDE_ENGINE_CLUSTER"}):
    fail.append(f"setting {k} is deprecated: every service reads RINGSIDE_REDIS / RINGSIDE_REDIS_CLUSTER")

cm = docs["deploy/k8s/configmap.yaml"][0]["data"]
procs = int(cm["RINGSIDE_EDGE_PROCESSES"])
base = int(cm["RINGSIDE_EDGE_METRICS_LISTEN"].rsplit(":", 1)[1])
dep = next(d for d in docs["deploy/k8s/edge.yaml"] if d["kind"] == "Deployment")
ports = {p["name"]: p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
want = {f"metrics-{i}": base + i for i in range(procs)}
got = {k: v for k, v in ports.items() if k.startswith("metrics-")}
if got != want:
    fail.append(f"edge.yaml metrics ports {got} != one per process from the ConfigMap {want}")
else:
    print(f"ok: edge.yaml declares metrics-0..{procs - 1} = {base}..{base + procs - 1}")

if fail:
    print("\n".join("FAIL: " + f for f in fail))
    sys.exit(1)
PY
