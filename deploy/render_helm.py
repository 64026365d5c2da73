"""Renders the Helm chart offline with Helm's own engine (helm-python-sdk binds Helm's Go SDK):
`render_helm.py CHART VALUES NAMESPACE OUT.yaml`. Used by deploy/check.sh."""

import sys

import helm_python as helm

chart_dir, values_file, namespace, out = sys.argv[1:5]
with open(values_file, encoding="utf-8") as f:
    values = helm.values_from_yaml(f.read())
lint = helm.lint(chart_dir, values, strict=True, namespace=namespace)
problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint["errors"]]
if problems:
    sys.exit(f"helm lint {chart_dir} with {values_file}: {problems}")
with helm.Chart.load(chart_dir) as chart:
    manifests = chart.render(values, name="gust", namespace=namespace, is_install=True)
with open(out, "w", encoding="utf-8") as f:
    for path in sorted(manifests):
        if manifests[path].strip():
            f.write(f"---\n# Source: {path}\n{manifests[path]}\n")
