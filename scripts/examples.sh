#!/usr/bin/env bash
# Regenerate docs/examples/ from real drills on a local lab of its own (a temp dir, ports from
# $EXAMPLES_BASE_PORT, default 29090): two rounds of three lab drills, run as suites the way CI
# runs them, with a responder posting to the channel and the status page during the outage
# drill; then `drillkit report index` and `trends` over the report folders.
#
# Needs what scripts/setup.sh installs (Prometheus, Alertmanager, PostgreSQL, the venv). Takes
# about five minutes. The lab is stopped on exit, whatever happens.
set -euo pipefail

cd "$(dirname "$0")/.."
DRILLKIT=${DRILLKIT:-.venv/bin/drillkit}
WORK=$(mktemp -d /tmp/drillkit-examples.XXXXXX)
export DRILLKIT_LAB_DIR="$WORK/lab"
OUT=docs/examples
REPORTS="$WORK/reports"

cleanup() {
	"$DRILLKIT" lab down --dir "$DRILLKIT_LAB_DIR" >/dev/null 2>&1 || true
	[[ -n ${RESPONDER:-} ]] && kill "$RESPONDER" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

"$DRILLKIT" lab up --dir "$DRILLKIT_LAB_DIR" --base-port "${EXAMPLES_BASE_PORT:-29090}"

# The outage drill waits for a person's acknowledgement here (the suite overrides it to
# `command`), so the example shows a staffed response: a responder in another shell opens the
# channel, posts to the status page in their roles, then acknowledges.
cat >"$WORK/examples.suite.yaml" <<SUITE
drills:
  - scenario: $PWD/scenarios/lab/outage.yaml
    overrides: {response: {acknowledge: command, within: 1m}}
  - scenario: $PWD/scenarios/lab/high-latency.yaml
  - scenario: $PWD/scenarios/lab/database-exhaustion.yaml
SUITE
responder() {
	local journal="" run
	for _ in $(seq 600); do
		journal=$(ls "$REPORTS"/*-lab-service-outage-*/journal.jsonl 2>/dev/null | tail -1 || true)
		# this round's run: paged, not finished (the previous round's outage run has finished)
		[[ -n $journal ]] && grep -q '"kind": "detected"' "$journal" && ! grep -q '"kind": "finished"' "$journal" && break
		journal=""
		sleep 0.2
	done
	[[ -n $journal ]] || return 0
	run=$(basename "$(dirname "$journal")")
	run=${run##*-}
	local day
	day=$(date -u +%Y-%m-%d)
	"$DRILLKIT" channel "$run" "#incident-$day-lab-service-outage" --by alice --report-dir "$REPORTS" || true
	"$DRILLKIT" update "$run" "Chat answers time out; looking into it" --state investigating --by bob --role comms --report-dir "$REPORTS" || true
	"$DRILLKIT" update "$run" "Replicas hung (SIGSTOP); resuming them" --by alice --role ic --report-dir "$REPORTS" || true
	"$DRILLKIT" update "$run" "Cause found: the API replicas hang" --state identified --by bob --role comms --report-dir "$REPORTS" || true
	"$DRILLKIT" ack "$run" --by alice --severity P1 --note "on it" --report-dir "$REPORTS" || true
}

for round in 1 2; do
	responder &
	RESPONDER=$!
	# exit 1 (a missed target) is a result worth showing; anything else stops the script
	"$DRILLKIT" run "$WORK/examples.suite.yaml" --report-dir "$REPORTS" --owner sre-team --due-in 14d || [[ $? == 1 ]]
	wait "$RESPONDER" || true
	RESPONDER=""
	echo "round $round done"
done

# Re-render every report so the responder's updates (written while the drill ran) are in them.
for folder in "$REPORTS"/*/; do
	[[ -f $folder/journal.jsonl ]] && "$DRILLKIT" report "$folder" >/dev/null
done
"$DRILLKIT" report index "$REPORTS"
"$DRILLKIT" report trends "$REPORTS"

rm -rf "$OUT/reports"
mkdir -p "$OUT"
cp -r "$REPORTS" "$OUT/reports"
find "$OUT/reports" -name 'ack.json' -delete
echo "examples written to $OUT/reports (index.html, trends.html, each run's report.html)"
