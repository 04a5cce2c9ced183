#!/usr/bin/env bash
# Regenerate docs/examples/scorecard/ from a real trainee exercise on a local lab of its own (a
# temp dir, ports from $SCORECARD_BASE_PORT, default 29190): `drillkit train` runs the
# database-exhaustion drill blind with a hint every 20 s, and a scripted trainee in other
# shells acknowledges (as P2), declares the channel, posts to the status page,
# asks for a hint, marks runbook steps done, finds the idle `chatbot-batch` sessions in
# pg_stat_activity and terminates them with SQL, then in the close-out window marks the fix done
# and posts "resolved". The run folder
# (scorecard.md/.html/.json next to the report, the journal and the trainee's actions) and the
# attempts page are copied to docs/examples/scorecard/.
#
# Needs what scripts/setup.sh installs. Takes about two minutes. The lab is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
DRILLKIT=${DRILLKIT:-.venv/bin/drillkit}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d /tmp/scorecard-example.XXXXXX)
export DRILLKIT_LAB_DIR="$WORK/lab"
OUT=docs/examples/scorecard
REPORTS="$WORK/reports"

cleanup() {
	"$DRILLKIT" lab down --dir "$DRILLKIT_LAB_DIR" >/dev/null 2>&1 || true
	[[ -n ${TRAINEE:-} ]] && kill "$TRAINEE" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

"$DRILLKIT" lab up --dir "$DRILLKIT_LAB_DIR" --base-port "${SCORECARD_BASE_PORT:-29190}"

sql() { # the trainee's psql, as the lab's superuser
	"$PYTHON" - "$1" "$DRILLKIT_LAB_DIR/state.json" <<'PY'
import json, sys
import psycopg
with psycopg.connect(json.load(open(sys.argv[2]))["dsn_admin"], autocommit=True) as conn:
    for row in conn.execute(sys.argv[1]).fetchall():
        print(*row)
PY
}

trainee() {
	local journal="" run day
	for _ in $(seq 900); do
		journal=$(ls "$REPORTS"/*/journal.jsonl 2>/dev/null | head -1 || true)
		[[ -n $journal ]] && grep -q '"kind": "detected"' "$journal" && break
		journal=""
		sleep 0.2
	done
	[[ -n $journal ]] || return 0
	run=$(basename "$(dirname "$journal")")
	run=${run##*-}
	day=$(date -u +%Y-%m-%d)
	# a person's pace: a few seconds between actions
	act() {
		"$DRILLKIT" "$1" "$run" "${@:2}" --report-dir "$REPORTS" >/dev/null
		sleep 3
	}
	sleep 3
	act ack --by alice --severity P2 --note "messages fail to send; looking at the database"
	act channel "#incident-$day-chat-db-connections" --by alice
	act update "Messages fail to send for many users; investigating" --state investigating --status-page --by alice --role comms
	act hint --by alice
	sql "SELECT application_name, state, count(*) FROM pg_stat_activity GROUP BY 1, 2 ORDER BY 3 DESC" >"$WORK/pg_stat_activity.txt"
	act step 1 --by alice
	act note "pg_stat_activity: the connection slots are held by idle chatbot-batch sessions" --by alice
	act update "Cause found: a batch client holds every database connection" --state identified --by alice
	act update "Terminating the idle chatbot-batch sessions" --by alice --role ic
	sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'chatbot-batch'" >/dev/null
	# the service is back: the close-out window is open for the resolution and the last steps
	sleep 5
	act step 5 --by alice
	act update "Resolved: the idle sessions are gone and messages send again" --state resolved --by alice --role comms
}

trainee &
TRAINEE=$!
# stdin stays open and silent: the trainee acts from other shells. Exit 1 (a missed target)
# is a result worth showing; anything else stops the script.
"$DRILLKIT" train scenarios/lab/database-exhaustion.yaml --trainee alice --hint-every 20 --close-out 25s \
	--report-dir "$REPORTS" < <(sleep 600) || [[ $? == 1 ]]
wait "$TRAINEE" || true
TRAINEE=""

folder=$(dirname "$(ls "$REPORTS"/*/journal.jsonl | head -1)")
"$DRILLKIT" scorecard "$folder" >/dev/null
"$DRILLKIT" attempts "$REPORTS" >/dev/null

mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
cp -r "$folder" "$OUT/"
cp "$REPORTS"/attempts.* "$OUT/"
cp "$WORK/pg_stat_activity.txt" "$OUT/"
find "$OUT" -name 'ack.json' -delete
echo "scorecard example written to $OUT ($(basename "$folder")/scorecard.md)"
