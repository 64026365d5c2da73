"""The checks of deploy/check.sh beyond Kubernetes' schemas, on manifests already rendered:

- the Helm chart and the Kustomize overlays describe the same objects (the chart rendered with
  ci/production-values.yaml equals overlays/production, ci/demo-values.yaml equals
  overlays/demo-sqlite, once labels, namespaces and the chart's bookkeeping are set aside);
- the Role grants exactly the rules `gust kubernetes rbac` prints (when a gust binary is given);
- gust.toml and every GUST__* variable are accepted by `gust config list`, and every Gust
  container's and probe's command is one the binary knows, and the scheduler's HTTP probes go to
  the port of its health server (when a gust binary is given);
- no workload carries the label the scheduler finds tasks' pods by (it would watch and sweep
  itself), and processing steps' init container image (GUST__ARTIFACTS__GUST_IMAGE) is the
  image of the pod that runs the scheduler.

Usage: check.py OUT_DIR [GUST_BINARY]; OUT_DIR holds kustomize-*.yaml and helm-*.yaml.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

OUT = Path(sys.argv[1])
GUST = sys.argv[2] if len(sys.argv) > 2 and os.access(sys.argv[2], os.X_OK) else None
TASK_POD_LABEL = ("app.kubernetes.io/managed-by", "gust")
# Labels only the chart sets (Helm's conventions): not part of the comparison.
HELM_ONLY_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def key(obj: dict) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def normalize(obj: dict) -> dict:
    """The object without what only one of the two tools adds."""
    obj = copy.deepcopy(obj)

    def strip_meta(meta: dict) -> None:
        meta.pop("namespace", None)
        meta.pop("annotations", None)
        labels = {k: v for k, v in meta.get("labels", {}).items() if k not in HELM_ONLY_LABELS}
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)

    strip_meta(obj["metadata"])
    spec = obj.get("spec", {})
    if obj["kind"] == "Deployment":
        strip_meta(spec["template"]["metadata"])
        for name in HELM_ONLY_LABELS:
            spec["selector"]["matchLabels"].pop(name, None)
        pod = spec["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            container.pop("imagePullPolicy", None)
    if obj["kind"] == "Service":
        for name in HELM_ONLY_LABELS:
            spec.get("selector", {}).pop(name, None)
        if spec.get("type") == "ClusterIP":
            spec.pop("type")
    if obj["kind"] == "ConfigMap" and "gust.toml" in obj.get("data", {}):
        obj["data"]["gust.toml"] = tomllib.loads(obj["data"]["gust.toml"])
    return obj


def first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'kustomize' if k in a else 'helm'}"
            found = first_difference(a[k], b[k], f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items in kustomize, {len(b)} in helm"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: kustomize {a!r}, helm {b!r}"


def compare(overlay: str, helm_render: str) -> None:
    kustomized = {key(o)[::2]: normalize(o) for o in load(OUT / f"kustomize-{overlay}.yaml")}
    charted = {key(o)[::2]: normalize(o) for o in load(OUT / f"helm-{helm_render}.yaml")}
    for k in sorted(set(kustomized) | set(charted)):
        if k not in charted:
            fail(f"{overlay}: {k[0]} {k[1]} is in the Kustomize overlay but not in the Helm chart")
        elif k not in kustomized:
            fail(f"{overlay}: {k[0]} {k[1]} is in the Helm chart but not in the Kustomize overlay")
        else:
            diff = first_difference(kustomized[k], charted[k])
            if diff:
                fail(f"{overlay}: {k[0]} {k[1]} differs between Kustomize and Helm at {diff}")


def gust_containers(spec: dict) -> list[dict]:
    return [
        c
        for c in spec.get("initContainers", []) + spec.get("containers", [])
        if c.get("args") and not c["image"].startswith("registry.k8s.io/git-sync/")
    ]


def check_workloads(path: Path) -> None:
    objects = load(path)
    configs = {
        o["metadata"]["name"]: o["data"]["gust.toml"]
        for o in objects
        if o["kind"] == "ConfigMap" and "gust.toml" in o.get("data", {})
    }
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        spec = pod_spec(obj)
        if spec is not None:
            labels = {**labels, **obj["spec"]["template"]["metadata"].get("labels", {})}
        if labels.get(TASK_POD_LABEL[0]) == TASK_POD_LABEL[1]:
            fail(f"{path.name}: {obj['kind']} {obj['metadata']['name']} is labelled "
                 f"{TASK_POD_LABEL[0]}={TASK_POD_LABEL[1]}, which marks tasks' pods")
        if spec is None:
            continue
        config_volume = next((v for v in spec.get("volumes", []) if v["name"] == "config"), None)
        toml = configs.get(config_volume["configMap"]["name"]) if config_volume else None
        for container in gust_containers(spec):
            where = f"{path.name}: {obj['metadata']['name']}/{container['name']}"
            env = {e["name"]: e for e in container.get("env", [])}
            if "GUST__ARTIFACTS__GUST_IMAGE" in env and env["GUST__ARTIFACTS__GUST_IMAGE"]["value"] != container["image"]:
                fail(f"{where}: GUST__ARTIFACTS__GUST_IMAGE is {env['GUST__ARTIFACTS__GUST_IMAGE']['value']}"
                     f" but the container runs {container['image']}")
            if GUST:
                check_with_binary(where, container, env, toml)


def check_with_binary(where: str, container: dict, env: dict, toml: str | None) -> None:
    with tempfile.TemporaryDirectory() as home:
        if toml is not None:
            Path(home, "gust.toml").write_text(toml, encoding="utf-8")
        variables = {k: v for k, v in os.environ.items() if not k.startswith("GUST")}
        variables["GUST_HOME"] = home
        for name, e in env.items():
            if "value" in e:
                variables[name] = e["value"]
            elif name == "GUST__DATABASE__URL":
                variables[name] = "postgres://user:password@db.invalid:5432/gust"
            else:
                variables[name] = "a-placeholder-of-at-least-16-characters"
        run = subprocess.run([GUST, "config", "list"], env=variables, capture_output=True, text=True)
        if run.returncode != 0:
            fail(f"{where}: gust.toml and the GUST__* variables are refused: {run.stderr.strip()}")
        elif container["args"][0] == "scheduler":
            check_health_port(where, container, tomllib.loads(run.stdout)["scheduler"])
        commands = [container["args"]]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            exec_ = container.get(probe, {}).get("exec")
            if exec_:
                if exec_["command"][0] != "gust":
                    fail(f"{where}: {probe} runs {exec_['command'][0]}, not gust")
                commands.append(exec_["command"][1:])
        for args in commands:
            run = subprocess.run([GUST, *args, "--help"], env=variables, capture_output=True, text=True)
            if run.returncode != 0:
                fail(f"{where}: `gust {' '.join(args)}` is not a gust command: {run.stderr.strip()}")


def check_health_port(where: str, container: dict, section: dict) -> None:
    """The scheduler's HTTP probes go to the port its health server listens on."""
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    want = section["scheduler_health_check_server_port"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        http = container.get(probe, {}).get("httpGet")
        if not http:
            continue
        port = ports.get(http["port"], http["port"])
        if not section["enable_health_check"]:
            fail(f"{where}: {probe} calls HTTP but [scheduler] enable_health_check is false")
        elif port != want:
            fail(f"{where}: {probe} calls port {http['port']} ({port}), but the health server "
                 f"listens on {want} ([scheduler] scheduler_health_check_server_port)")


def normalized(rules: list) -> list:
    """Rules with their verbs in a stable order (verb order means nothing to Kubernetes)."""
    return [{**rule, "verbs": sorted(rule["verbs"])} for rule in rules]


def check_rbac(path: Path) -> None:
    command = [GUST, "kubernetes", "rbac"]
    # The render with every option grants what the example DAGs' Jobs and Spark tasks call.
    if path.name == "helm-more.yaml":
        command += ["--dags-folder", str(Path(__file__).resolve().parent.parent / "examples/dags")]
    printed = [o for o in yaml.safe_load_all(subprocess.run(
        command, check=True, capture_output=True, text=True).stdout) if o]
    want = normalized(next(o["rules"] for o in printed if o["kind"] == "Role"))
    for obj in load(path):
        if obj["kind"] == "Role" and normalized(obj["rules"]) != want:
            fail(f"{path.name}: Role {obj['metadata']['name']} grants {json.dumps(obj['rules'])}, "
                 f"but `gust kubernetes rbac` grants {json.dumps(want)}")


def main() -> None:
    compare("production", "production")
    compare("demo-sqlite", "demo")
    renders = sorted(OUT.glob("kustomize-*.yaml")) + sorted(OUT.glob("helm-*.yaml"))
    for path in renders:
        check_workloads(path)
        if GUST:
            check_rbac(path)
    if not GUST:
        print("deploy/check.py: no gust binary given: RBAC rules, configuration keys and commands not checked")
    for message in failures:
        print(f"FAIL {message}", file=sys.stderr)
    checks = len(renders)
    print(f"deploy/check.py: {checks} renders checked, {len(failures)} problems")
    sys.exit(1 if failures else 0)


main()
