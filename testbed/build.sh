#!/usr/bin/env bash
# Builds the testbed's binaries from Go modules (through the Go module proxy) into a cache
# keyed by version, so that a second run only checks that they are there.
#
#   testbed/build.sh [all|kube|etcd|kwok|helm|vpa|vpa-components|kuberay]...
#
# Cache: ${VPA_FLEET_CACHE:-~/.cache/vpa-fleet}/bin/<component>-<version>/
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${VPA_FLEET_CACHE:-$HOME/.cache/vpa-fleet}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"

log() { printf '[testbed/build] %s\n' "$*" >&2; }
die() { printf '[testbed/build] ERROR: %s\n' "$*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null || die "go is not installed: install Go >= 1.25 (https://go.dev/doc/install) and put it on PATH"
  local v; v=$(go env GOVERSION | sed 's/^go//')
  local major minor; major=${v%%.*}; minor=$(echo "$v" | cut -d. -f2)
  if (( major < 1 || (major == 1 && minor < 25) )); then
    die "go $v is too old: kube-apiserver $KUBE_VERSION needs Go >= 1.25"
  fi
}

# build_in_wrapper NAME: runs the caller-defined function in a throw-away module dir,
# keeping its log; on failure prints the log tail and says which component failed.
run_logged() {
  local name=$1; shift
  local logf="$cache/logs/build-$name.log"
  mkdir -p "$cache/logs"
  log "building $name (log: $logf)"
  local t0=$SECONDS
  # Not `if ! (...)`: bash ignores `set -e` inside a tested command, so a failing step would
  # carry on and only the last command's status would count.
  local rc=0
  set +e
  ("$@") >"$logf" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    tail -n 30 "$logf" >&2
    die "building $name failed (full log: $logf). It needs Go >= 1.25 and the Go module proxy."
  fi
  log "built $name in $((SECONDS - t0)) s"
}

gomod_field() { # gomod_field MODULE@VERSION FIELD  -> GoMod/Dir path in the module cache
  go mod download -json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

build_kube() {
  local out=$cache/bin/kube-$KUBE_VERSION
  if [[ -x $out/kube-apiserver && -x $out/kube-controller-manager && -x $out/kube-scheduler && -x $out/kubectl ]]; then
    return
  fi
  _kube() {
    set -euo pipefail
    local w; w=$(mktemp -d); cd "$w"
    go mod init local/kubebuild
    local sv="v0.${KUBE_VERSION#1.}" minor; minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
    local gomod; gomod=$(gomod_field "k8s.io/kubernetes@v$KUBE_VERSION" GoMod)
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    # paths; route each one to its published version instead (the list differs per minor).
    local m
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod"); do
      go mod edit -replace="$m=$m@$sv"
    done
    go mod edit -go=1.25.0
    printf '\ngodebug default=go1.25\n' >>go.mod
    local p=k8s.io/kubernetes/cmd
    go get -tool "$p/kube-apiserver@v$KUBE_VERSION" "$p/kube-controller-manager@v$KUBE_VERSION" \
      "$p/kube-scheduler@v$KUBE_VERSION" "$p/kubectl@v$KUBE_VERSION"
    local ldf="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor
      -X k8s.io/component-base/version.gitTreeState=clean
      -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z
      -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
    mkdir -p "$out.tmp"
    go build -p 2 -tags selinux,notest,grpcnotrace -ldflags "$ldf" -o "$out.tmp/" \
      "$p/kube-apiserver" "$p/kube-controller-manager" "$p/kube-scheduler" "$p/kubectl"
    "$out.tmp/kube-apiserver" --version
    rm -rf "$out"; mv "$out.tmp" "$out"
    rm -rf "$w"
  }
  run_logged "kube-$KUBE_VERSION" _kube
}

build_etcd() {
  local out=$cache/bin/etcd-$ETCD_VERSION
  if [[ -x $out/etcd ]]; then return; fi
  _etcd() {
    set -euo pipefail
    local w; w=$(mktemp -d); cd "$w"
    go mod init local/etcdbuild
    # server/v3 has local replaces in its go.mod, so it cannot be `go install`ed; as a
    # dependency its replaces are ignored and its requires name published versions.
    go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    mkdir -p "$out.tmp"
    go build -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
    "$out.tmp/etcd" --version
    rm -rf "$out"; mv "$out.tmp" "$out"
    rm -rf "$w"
  }
  run_logged "etcd-$ETCD_VERSION" _etcd
}

build_kwok() {
  local out=$cache/bin/kwok-$KWOK_VERSION
  if [[ -x $out/kwok && -f $out/stages.yaml ]]; then return; fi
  _kwok() {
    set -euo pipefail
    mkdir -p "$out.tmp"
    GOBIN="$out.tmp" go install "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
    # Recent KWOK ships no default stages in the binary: take the "fast" set from its module.
    local src; src=$(gomod_field "sigs.k8s.io/kwok@v$KWOK_VERSION" Dir)
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      cat "$src/kustomize/stage/$f"; printf '\n---\n'
    done >"$out.tmp/stages.yaml"
    rm -rf "$out"; mv "$out.tmp" "$out"
  }
  run_logged "kwok-$KWOK_VERSION" _kwok
}

build_helm() {
  local out=$cache/bin/helm-$HELM_VERSION
  if [[ -x $out/helm ]]; then return; fi
  _helm() {
    set -euo pipefail
    mkdir -p "$out.tmp"
    GOBIN="$out.tmp" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
    rm -rf "$out"; mv "$out.tmp" "$out"
  }
  run_logged "helm-$HELM_VERSION" _helm
}

# The VPA module: its CRDs (taken from the module cache, never copied into the repo).
build_vpa() {
  local out=$cache/bin/vpa-$VPA_VERSION
  if [[ -f $out/vpa-v1-crd-gen.yaml ]]; then return; fi
  _vpa() {
    set -euo pipefail
    local dir; dir=$(gomod_field "k8s.io/autoscaler/vertical-pod-autoscaler@v$VPA_VERSION" Dir)
    mkdir -p "$out.tmp"
    cp "$dir/deploy/vpa-v1-crd-gen.yaml" "$out.tmp/"
    rm -rf "$out"; mv "$out.tmp" "$out"
  }
  run_logged "vpa-$VPA_VERSION" _vpa
}

# The VPA updater and admission controller, from the same VPA module release as the CRDs.
# The module's go.mod has exclude directives, so `go install pkg@version` refuses it; built as
# a dependency of a throw-away module, its excludes are ignored and its requires are used.
build_vpa_components() {
  local out=$cache/bin/vpa-components-$VPA_VERSION
  if [[ -x $out/updater && -x $out/admission-controller ]]; then return; fi
  _vpa_components() {
    # Each step says when it fails: run_logged's `if !` turns errexit off in here.
    set -euo pipefail
    local v; v=$(go env GOVERSION | sed 's/^go//')
    if (( $(echo "$v" | cut -d. -f2) < 26 )); then
      echo "go $v is too old: the VPA module v$VPA_VERSION needs Go >= 1.26"; return 1
    fi
    local w; w=$(mktemp -d); cd "$w" || return 1
    go mod init local/vpabuild || return 1
    local m=k8s.io/autoscaler/vertical-pod-autoscaler/pkg
    go get -tool "$m/updater@v$VPA_VERSION" "$m/admission-controller@v$VPA_VERSION" || return 1
    mkdir -p "$out.tmp" || return 1
    go build -p 2 -ldflags "-s -w" -o "$out.tmp/" "$m/updater" "$m/admission-controller" || return 1
    "$out.tmp/updater" --help >/dev/null 2>&1 || { echo "the built updater does not run"; return 1; }
    rm -rf "$out" && mv "$out.tmp" "$out" && rm -rf "$w"
  }
  run_logged "vpa-components-$VPA_VERSION" _vpa_components
}

# KubeRay's RayCluster CRD (the chart's fleet mode renders a RayCluster; the dry run needs the
# CRD): taken from the ray-operator module's config/crd/bases, never copied into the repo.
build_kuberay() {
  local out=$cache/bin/kuberay-$KUBERAY_VERSION
  if [[ -f $out/ray.io_rayclusters.yaml ]]; then return; fi
  _kuberay() {
    set -euo pipefail
    local dir; dir=$(gomod_field "github.com/ray-project/kuberay/ray-operator@v$KUBERAY_VERSION" Dir)
    mkdir -p "$out.tmp"
    cp "$dir/config/crd/bases/ray.io_rayclusters.yaml" "$out.tmp/"
    rm -rf "$out"; mv "$out.tmp" "$out"
  }
  run_logged "kuberay-$KUBERAY_VERSION" _kuberay
}

need_go
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || targets=(all)
for t in "${targets[@]}"; do
  case $t in
    all) build_etcd; build_kwok; build_vpa; build_vpa_components; build_helm; build_kuberay; build_kube ;;
    kube|etcd|kwok|helm|vpa) "build_$t" ;;
    vpa-components) build_vpa_components ;;
    kuberay) build_kuberay ;;
    *) die "unknown component '$t' (expected one of: all kube etcd kwok helm vpa vpa-components kuberay)" ;;
  esac
done
log "binaries ready under $cache/bin"
