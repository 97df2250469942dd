#!/usr/bin/env bash
# Build the parity oracle (the stock VPA recommender's packages, see README.md) once per
# version of its sources and print the binary's path, and nothing else, on stdout.
#
#   ${VPA_FLEET_CACHE:-~/.cache/vpa-fleet}/bin/oracle-<hash of *.go go.mod go.sum>/oracle
#
# Progress and errors go to stderr. Dependencies come through the Go module proxy.
set -euo pipefail
export LC_ALL=C GOTOOLCHAIN=local CGO_ENABLED=0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${VPA_FLEET_CACHE:-$HOME/.cache/vpa-fleet}"
min_go="1.26" # upstream v1.7.3's go.mod says go 1.26.0

log() { printf 'oracle build: %s\n' "$*" >&2; }
fail() {
	log "FAILED: $*"
	log "the oracle needs Go >= ${min_go} (https://go.dev/dl/) on PATH and the Go module proxy"
	log "(GOPROXY, default https://proxy.golang.org) reachable, unless the modules are already"
	log "in the Go module cache ($(go env GOMODCACHE 2>/dev/null || echo '$GOPATH/pkg/mod'))"
	exit 1
}

cd "$here"
hash="$(sha256sum -- *.go go.mod go.sum | sha256sum | cut -c1-16)"
target_dir="$cache/bin/oracle-$hash"
binary="$target_dir/oracle"
if [[ -x "$binary" ]]; then
	echo "$binary"
	exit 0
fi

command -v go >/dev/null 2>&1 || fail "no 'go' command on PATH"
version="$(go env GOVERSION)" || fail "'go env GOVERSION' did not run"
if [[ ! "$version" =~ ^go([0-9]+)\.([0-9]+) ]] ||
	((BASH_REMATCH[1] < 1 || (BASH_REMATCH[1] == 1 && BASH_REMATCH[2] < 26))); then
	fail "found $version"
fi

mkdir -p "$cache/bin" || fail "cannot create $cache/bin"
work="$(mktemp -d "$cache/bin/.oracle-$hash.XXXXXX")" || fail "cannot create a directory in $cache/bin"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
log "building with $version into $target_dir (the first build takes a few minutes)"
start=$SECONDS
go build -mod=readonly -trimpath -buildvcs=false -o "$work/oracle" . >&2 ||
	fail "go build in $here (see the errors above)"
# Publish atomically: a concurrent build of the same sources may have won the race.
if ! mv -T "$work" "$target_dir" 2>/dev/null && [[ ! -x "$binary" ]]; then
	fail "cannot move the binary to $target_dir"
fi
log "built in $((SECONDS - start))s"
echo "$binary"
