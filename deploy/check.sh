#!/usr/bin/env bash
# Renders every deployment manifest and checks it: the Kustomize overlays (`kubectl kustomize`),
# the Helm chart with each of its ci/*.yaml values files (Helm's own engine, from PyPI's
# helm-python-sdk, after `helm lint --strict`) and deploy/secret.example.yaml are validated
# against Kubernetes' schemas (kubernetes-validate --strict); then deploy/check.py checks that
# the chart and the overlays agree, that the Role is what `gust kubernetes rbac` prints, and that
# the binary accepts the configuration and commands they use. Run by .ci/run; exits non-zero on
# any problem. Installs what it needs once (kubectl from Debian's kubernetes-client when none is
# on PATH; Python venvs under target/).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
gust=${GUST_BIN:-$target/debug/gust}
venv=$target/ci-venv
helm_venv=$target/helm-venv
if [ -n "${CI:-}" ] && [ ! -x "$gust" ]; then
  echo "deploy/check.sh: no gust binary at $gust (build it first, or set GUST_BIN)" >&2
  exit 1
fi

if ! kubectl kustomize --help >/dev/null 2>&1; then
  { apt-get install -y -qq kubernetes-client || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }; } >/dev/null
fi
[ -x "$venv/bin/kubernetes-validate" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet kubernetes-validate; }
# Pinned: the renderer is young; a new version is taken on purpose.
[ -x "$helm_venv/bin/python" ] && "$helm_venv/bin/python" -c 'import helm_python' 2>/dev/null \
  || { python3 -m venv "$helm_venv" && "$helm_venv/bin/pip" install --quiet helm-python-sdk==0.2.2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for overlay in deploy/kustomize/overlays/*/; do
  name=$(basename "$overlay")
  # Today's kustomize warns that `bases:` is deprecated; it is kept for Debian's kubectl 1.20.
  kubectl kustomize "$overlay" >"$out/kustomize-$name.yaml" 2> >(grep -v "'bases' is deprecated\|'patchesStrategicMerge' is deprecated" >&2)
done
for values in deploy/helm/gust/ci/*.yaml; do
  name=$(basename "$values" -values.yaml)
  namespace=gust
  [ "$name" = demo ] && namespace=gust-demo
  "$helm_venv/bin/python" deploy/render_helm.py deploy/helm/gust "$values" "$namespace" "$out/helm-$name.yaml"
done
cp deploy/secret.example.yaml "$out/secret-example.yaml"

"$venv/bin/kubernetes-validate" --strict --quiet "$out"/*.yaml
echo "kubernetes-validate --strict: $(ls "$out"/*.yaml | wc -l) files, $(grep -c '^kind:' "$out"/*.yaml | awk -F: '{n += $2} END {print n}') objects valid"
"$venv/bin/python" deploy/check.py "$out" "$gust"
