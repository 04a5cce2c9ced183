#!/usr/bin/env bash
# Fetch real, public Prometheus alerting rules for the "bring your own rules" tests and examples,
# at set-up time and never committed: the node-exporter mixin (node_exporter's docs/node-mixin,
# the node alerts kube-prometheus ships) and the Prometheus self-monitoring mixin
# (prometheus' documentation/prometheus-mixin), both Apache-2.0, from the Go module proxy;
# rendered with go-jsonnet (config + alerts only: the dashboards need grafonnet) into
# DRILLKIT_PUBLIC_RULES (default ~/.cache/drillkit/public-rules)/<name>-<version>/, each with the
# module's LICENSE beside it, and checked with `promtool check rules`. A second run with every
# file present does nothing. Prints the cache folder on stdout.
#
# Configuration, not editing: the selectors are set explicitly to the lab's jobs (the node mixin's
# _config.nodeExporterSelector to job="node", its default; the Prometheus mixin's prometheusSelector
# to job="prometheus"). The rule expressions are otherwise the mixins' own.
set -euo pipefail

NODE_EXPORTER_VERSION=${DRILLKIT_NODE_MIXIN_VERSION:-v1.12.1}
PROMETHEUS_VERSION=${DRILLKIT_PROMETHEUS_MIXIN_VERSION:-v0.54.1}
JSONNET_VERSION=${DRILLKIT_JSONNET_VERSION:-v0.22.0}
NODE_SELECTOR=${DRILLKIT_NODE_SELECTOR:-job=\"node\"}
PROM_SELECTOR=${DRILLKIT_PROMETHEUS_SELECTOR:-job=\"prometheus\"}
CACHE=${DRILLKIT_PUBLIC_RULES:-${XDG_CACHE_HOME:-$HOME/.cache}/drillkit/public-rules}
NODE_DIR=$CACHE/node-mixin-$NODE_EXPORTER_VERSION
PROM_DIR=$CACHE/prometheus-mixin-$PROMETHEUS_VERSION
STAMP="$NODE_SELECTOR $PROM_SELECTOR $JSONNET_VERSION"

if [[ -f $NODE_DIR/node-exporter-alerts.yml && -f $NODE_DIR/LICENSE && -f $PROM_DIR/prometheus-alerts.yml \
  && -f $PROM_DIR/LICENSE && -f $CACHE/stamp && $(cat "$CACHE/stamp") == "$STAMP" ]]; then
  echo "$CACHE"; exit 0
fi

command -v go >/dev/null || { echo "fetch-public-rules: needs Go (https://go.dev/dl/) to fetch the public rule sets" >&2; exit 1; }
command -v promtool >/dev/null || { echo "fetch-public-rules: needs promtool (the prometheus package)" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0
mkdir -p "$CACHE/bin"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
printf 'module drillkit.local/publicrules\n\ngo 1.22\n' >go.mod

moddir() {  # the extracted module folder of $1@$2
  go mod download -json "$1@$2" | sed -n 's/^\s*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

JSONNET=$CACHE/bin/jsonnet-$JSONNET_VERSION
if [[ ! -x $JSONNET ]]; then
  GOBIN=$TMP/bin go install "github.com/google/go-jsonnet/cmd/jsonnet@$JSONNET_VERSION"
  mv "$TMP/bin/jsonnet" "$JSONNET"
fi

render() {  # module dir, mixin subdir, alerts file, selector field, selector, out dir, out file
  local src=$1/$2 out=$6
  mkdir -p "$out"
  "$JSONNET" -J "$src" -S -e "
    local mixin = (import 'config.libsonnet') + (import '$3') + { _config+:: { $4: '$5' } };
    std.manifestYamlDoc(mixin.prometheusAlerts)" >"$out/$7.tmp"
  promtool check rules "$out/$7.tmp" >&2
  mv "$out/$7.tmp" "$out/$7"
  cp "$1/LICENSE" "$out/LICENSE"
  chmod u+w "$out/LICENSE"
}

node_src=$(moddir github.com/prometheus/node_exporter "$NODE_EXPORTER_VERSION")
prom_src=$(moddir github.com/prometheus/prometheus "$PROMETHEUS_VERSION")
render "$node_src" docs/node-mixin alerts/alerts.libsonnet nodeExporterSelector "$NODE_SELECTOR" "$NODE_DIR" node-exporter-alerts.yml
render "$prom_src" documentation/prometheus-mixin alerts.libsonnet prometheusSelector "$PROM_SELECTOR" "$PROM_DIR" prometheus-alerts.yml
echo "$STAMP" >"$CACHE/stamp"
echo "$CACHE"
