#!/usr/bin/env bash
# Builds Kubernetes commands from Debian's `kubernetes` source package (upstream v1.20.2
# with vendored deps) into $1: by default kube-apiserver, kube-controller-manager and
# kube-scheduler; further arguments name other commands (kubelet, kube-proxy for real nodes).
# Only Debian's registry is reachable on our machines, so this is the one
# offline-safe way to get a real control plane. Progress goes to stderr.
set -euo pipefail
dest="${1:?usage: build-control-plane.sh DEST_DIR [COMMAND...]}"
shift
commands=("$@")
((${#commands[@]})) || commands=(kube-apiserver kube-controller-manager kube-scheduler)
work="$(mktemp -d /tmp/llmops-k8s-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
step() { echo "[build-control-plane] $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
step "installing build tools (golang-go, rsync, dpkg-dev)"
apt-get update -qq >&2
apt-get install -y -qq golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev >&2

# Source packages from the same mirror apt already uses, without touching its config.
srcdir="$work/apt"
mkdir -p "$srcdir/lists/partial"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$srcdir/src.sources"
aptopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$srcdir/parts"
         -o "Dir::State::Lists=$srcdir/lists")
mkdir -p "$srcdir/parts" && cp "$srcdir/src.sources" "$srcdir/parts/"
step "fetching the kubernetes source package"
apt-get "${aptopts[@]}" update -qq >&2
(cd "$work" && apt-get "${aptopts[@]}" source --download-only kubernetes >&2)
orig="$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)"
mkdir -p "$work/src" && tar -xzf "$orig" -C "$work/src" --strip-components=1

cd "$work/src"
# The tree vendors reflect2 v1.0.1, whose map iteration crashes (SIGSEGV in
# mapiterinit) when built with Go >= 1.18; Debian ships the fixed v1.0.2 source.
step "replacing vendored reflect2 v1.0.1 with Debian's v1.0.2 (Go 1.18+ fix)"
reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf vendor/github.com/modern-go/reflect2 && mkdir -p vendor/github.com/modern-go/reflect2
find "$reflect2" -maxdepth 1 -type f ! -name go.mod -exec cp {} vendor/github.com/modern-go/reflect2/ \;
export GOFLAGS=-mod=vendor GO111MODULE=on GOPATH="$work/gopath" GOCACHE="$work/gocache"
step "make generated_files (about 1.5 min)"
make generated_files >&2
what=""
for c in "${commands[@]}"; do what+=" cmd/$c"; done
step "building ${commands[*]} (about 6 min on 2 cores)"
make WHAT="${what# }" GOLDFLAGS="-s -w" >&2
mkdir -p "$dest"
for c in "${commands[@]}"; do cp "_output/bin/$c" "$dest/"; done
# The kubelet's device-plugin API definition: the sandbox's GPU device plugin compiles it.
cp staging/src/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto "$dest/deviceplugin-v1beta1.proto"
step "done: binaries in $dest"
