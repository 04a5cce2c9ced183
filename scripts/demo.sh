#!/usr/bin/env bash
# Zero-setup demo on a fresh Debian/Ubuntu machine (root or sudo), from a clone of drillkit:
# installs Prometheus, Alertmanager, PostgreSQL, the postgres exporter and stress-ng (apt) and
# drillkit (.venv), starts the local lab (`drillkit lab up`), runs the service-outage drill
# against it and prints where the post-mortem report is. The lab keeps running afterwards:
# try the other drills (docs/lab.md), then stop it with `.venv/bin/drillkit lab down`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

DK=.venv/bin/drillkit
"$DK" validate scenarios/lab/
"$DK" lab up
# `drillkit run` would find the lab's Prometheus by itself (<lab dir>/state.json); it is
# spelled out here so the demo shows where detection is timed from.
PROM=$(.venv/bin/python -c 'from drillkit.lab.lab import lab_url; print(lab_url("prometheus"))')
set +e
folder=$("$DK" run scenarios/lab/outage.yaml --prometheus-url "$PROM")
rc=$?
set -e
echo
if [[ -n "$folder" && -f "$folder/report.md" ]]; then
  echo "Post-mortem report: $folder/report.md (also report.html, report.json, junit.xml)"
else
  echo "The drill wrote no report (exit $rc); see the messages above and \`$DK lab logs\`." >&2
fi
echo "More drills: docs/lab.md. Stop the lab: $DK lab down"
exit "$rc"
