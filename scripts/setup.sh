#!/usr/bin/env bash
# Install drillkit's system services (Debian/Ubuntu) and the Python package in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
need=()
for pair in prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
            prometheus-postgres-exporter:prometheus-postgres-exporter prometheus-node-exporter:prometheus-node-exporter \
            stress-ng:stress-ng openssl:openssl \
            chromium:chromium patch:patch ip:iproute2 shellcheck:shellcheck; do  # chromium: report.html is checked in a real headless browser; patch, ip: the test control plane; shellcheck: actionlint checks the workflows' run: blocks with it
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if ((${#need[@]})); then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages start their own daemons on the default ports; drillkit starts its own.
for svc in prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-node-exporter postgresql; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
PY=${PYTHON:-python3}
# Debian/Ubuntu ship `venv` separately; drillkit needs Python 3.11+.
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "drillkit needs Python 3.11 or newer ($("$PY" --version)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
log=$(mktemp)
if ! .venv/bin/pip install -q -e '.[test]' >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
rm -f "$log"
# The real Kubernetes control plane for the wire tests (kube-apiserver, etcd, controller-manager,
# scheduler, kubectl, KWOK), built from the Go module proxy once per machine into ~/.cache/drillkit.
if command -v go >/dev/null 2>&1; then
  bash scripts/build-k8s.sh >/dev/null
  # Public alerting rules (node-exporter and Prometheus mixins) for the "your own rules" tests,
  # rendered into ~/.cache/drillkit/public-rules, never committed.
  bash scripts/fetch-public-rules.sh >/dev/null
else
  echo "setup: Go not found: the Kubernetes wire tests need it to build the test control plane (scripts/build-k8s.sh)" >&2
fi
# actionlint (tests/test_workflows.py lints every workflow with it), from the Go module proxy at a
# pinned version, once per machine into ~/.cache/drillkit/actionlint-<version>/.
ACTIONLINT_VERSION=v1.7.12
ACTIONLINT_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/drillkit/actionlint-$ACTIONLINT_VERSION
if [[ ! -x $ACTIONLINT_BIN/actionlint ]]; then
  if command -v go >/dev/null 2>&1; then
    log=$(mktemp)
    if ! CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-trimpath GOBIN=$ACTIONLINT_BIN \
         go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >"$log" 2>&1; then
      cat "$log" >&2
      exit 1
    fi
    rm -f "$log"
  else
    echo "setup: Go not found: the workflow lint test needs it to build actionlint" >&2
  fi
fi
