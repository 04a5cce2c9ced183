#!/usr/bin/env bash
# Build the real Kubernetes control plane that the wire tests run against, from the Go module
# proxy, once per machine: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, kwok and kwokctl from sigs.k8s.io/kwok.
# Cached outside the checkout (DRILLKIT_K8S_CACHE, default ~/.cache/drillkit/k8s-<version>); a
# second run with every binary present does nothing. Prints the bin folder on stdout.
set -euo pipefail

KUBE_VERSION=${DRILLKIT_KUBE_VERSION:-v1.35.4}   # the one Kubernetes minor the tests pin (README)
ETCD_VERSION=${DRILLKIT_ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${DRILLKIT_KWOK_VERSION:-v0.7.0}
CACHE=${DRILLKIT_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drillkit/k8s-$KUBE_VERSION}
BIN=$CACHE/bin
REPO=$(cd "$(dirname "$0")/.." && pwd)
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl)

# KWOK is rebuilt when its patches change
KWOK_STAMP="$KWOK_VERSION $(cat "$REPO"/scripts/patches/kwok-*.patch | sha256sum | cut -c1-16)"
[[ -f $BIN/kwok.stamp && $(cat "$BIN/kwok.stamp") == "$KWOK_STAMP" ]] || rm -f "$BIN/kwok" "$BIN/kwokctl"
missing=0
for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || missing=1; done
if ((missing == 0)); then echo "$BIN"; exit 0; fi

command -v go >/dev/null || { echo "build-k8s: needs Go (https://go.dev/dl/) to build the test control plane" >&2; exit 1; }
mkdir -p "$BIN" "$CACHE/src"
export CGO_ENABLED=0 GOFLAGS='-trimpath -mod=mod' GOTOOLCHAIN=${GOTOOLCHAIN:-local}
start=$(date +%s)

# Kubernetes: a module of ours that requires k8s.io/kubernetes and pins each staging module
# (required there as v0.0.0 with a replace into ./staging, which a dependency cannot use) to the
# matching v0.x release — the usual way to build Kubernetes as a dependency.
build_kube() {
  local dir=$CACHE/src/kube minor=${KUBE_VERSION#v1.} gomod
  minor=${minor%%.*}
  local staging=v0.${KUBE_VERSION#v1.}
  mkdir -p "$dir"
  cd "$dir"
  printf 'module drillkit.local/kubebuild\n\ngo 1.25.0\n' >go.mod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    grep -E '^\s*k8s.io/[a-z0-9-]+ v0\.0\.0\s*$' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  go build -ldflags "$ld" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir=$CACHE/src/etcd
  mkdir -p "$dir"
  cd "$dir"
  printf 'module drillkit.local/etcdbuild\n\ngo 1.25.0\n' >go.mod
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >>go.mod
  go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  local dir=$CACHE/src/kwok
  mkdir -p "$dir"
  cd "$dir"
  # KWOK's source with scripts/patches/kwok-*.patch applied (each says why), built in its place
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  rm -rf kwok-src && cp -r "$src" kwok-src && chmod -R u+w kwok-src
  for p in "$REPO"/scripts/patches/kwok-*.patch; do patch -s -p1 -d kwok-src <"$p" || return 1; done
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  (cd kwok-src && go build -ldflags "$ld" -o "$BIN/" ./cmd/kwok ./cmd/kwokctl) || return 1
  echo "$KWOK_STAMP" >"$BIN/kwok.stamp"
}

log=$CACHE/build.log
: >"$log"
for part in kube etcd kwok; do
  need=0
  case $part in
    kube) for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do [[ -x $BIN/$b ]] || need=1; done ;;
    etcd) [[ -x $BIN/etcd ]] || need=1 ;;
    kwok) [[ -x $BIN/kwok && -x $BIN/kwokctl ]] || need=1 ;;
  esac
  ((need)) || continue
  echo "build-k8s: building $part (first build on this machine: several minutes; log $log)" >&2
  set +e  # (errexit is ignored inside a command whose status is tested: test it after)
  (set -e; build_$part) >>"$log" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    tail -30 "$log" >&2
    echo "build-k8s: building $part failed (log: $log)" >&2
    exit 1
  fi
done
echo "build-k8s: built in $(( $(date +%s) - start )) s" >&2
echo "$KUBE_VERSION $ETCD_VERSION $KWOK_VERSION" >"$CACHE/versions"
echo "$BIN"
