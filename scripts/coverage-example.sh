#!/usr/bin/env bash
# Regenerate docs/examples/coverage/ from real drills on a local lab of its own (a temp dir,
# ports from $EXAMPLES_BASE_PORT, default 29190) that also loads public third-party rules: the
# node-exporter and Prometheus self-monitoring mixins, rendered by scripts/fetch-public-rules.sh
# (run here; cached in ~/.cache/drillkit/public-rules, never committed): the five lab drills, then
# `drillkit coverage` against that lab's Prometheus. About five minutes; the lab is stopped on
# exit, whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
DRILLKIT=${DRILLKIT:-.venv/bin/drillkit}
WORK=$(mktemp -d /tmp/drillkit-coverage.XXXXXX)
export DRILLKIT_LAB_DIR="$WORK/lab"
OUT=docs/examples/coverage
REPORTS="$WORK/reports"
BASE=${EXAMPLES_BASE_PORT:-29190}

cleanup() {
	"$DRILLKIT" lab down --dir "$DRILLKIT_LAB_DIR" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

PUBLIC=$(bash scripts/fetch-public-rules.sh)
"$DRILLKIT" lab up --dir "$DRILLKIT_LAB_DIR" --base-port "$BASE" \
	--rules "$PUBLIC/node-mixin-v1.12.1" --rules "$PUBLIC/prometheus-mixin-v0.54.1"

for scenario in scenarios/lab/outage.yaml scenarios/lab/database-exhaustion.yaml \
	scenarios/lab/high-latency.yaml scenarios/lab/auth-failures.yaml scenarios/lab/memory-leak.yaml; do
	"$DRILLKIT" run "$scenario" --report-dir "$REPORTS" --settle-timeout 120 || true  # a miss is part of the picture
done
mkdir -p "$OUT"
"$DRILLKIT" coverage --prometheus-url "http://127.0.0.1:$BASE" --report-dir "$REPORTS" --out "$OUT"
