"""`make deploy-check`: render every kustomization under deploy/k8s and check what comes out, offline, in seconds.

    .venv/bin/python deploy/check.py [--kubernetes-version 1.32] [-v]

1. `kubectl kustomize` renders base and each overlay (kubectl ships kustomize; nothing is applied anywhere).
2. Every built-in object is validated with kubernetes-validate against that Kubernetes version's OpenAPI schema
   in strict mode (unknown fields fail). The custom resources we use (KEDA ScaledObject, Prometheus Operator
   ServiceMonitor) have no schema there: they get a structural check of the fields we rely on; any other unknown
   kind fails, so a misspelt kind cannot slip through as "a CRD".
3. The contract in deploy/README.md: hardened pods (non-root, read-only root, no capabilities, RuntimeDefault
   seccomp, no privilege escalation), requests and limits on every container, native gRPC probes naming the
   services from the protos, a termination grace above drain + grace, named ports, one Recreate trainer, and
   every ConfigMap and Secret a pod reads either rendered or one of the Secrets operators create.
4. Drift between code and operator material: every metric the services export is in docs/metrics.md, and every
   metric named there or in the Grafana dashboard exists; every TISTUDIO_* variable the code reads is in
   docs/configuration.md, and every one the manifests set is a real one.

Exit 0 when all is well; otherwise each problem on its own line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/gpu")
# Secrets that operators create in the namespace (docs/security.md); an overlay may generate them instead.
EXTERNAL_SECRETS = {"tistudio-store", "tistudio-auth"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SERVICES = ("caption", "trainer", "preview")


def render(target: str) -> list[dict]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy-check: kubectl kustomize {target} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# --- custom resources ---------------------------------------------------------------------------------------------


def _check_scaled_object(obj: dict) -> list[str]:
    spec = obj.get("spec", {})
    problems = []
    if not spec.get("scaleTargetRef", {}).get("name"):
        problems.append("spec.scaleTargetRef.name is missing")
    triggers = spec.get("triggers") or []
    if not triggers:
        problems.append("spec.triggers is empty")
    for i, trigger in enumerate(triggers):
        if not trigger.get("type") or not isinstance(trigger.get("metadata"), dict):
            problems.append(f"spec.triggers[{i}] needs a type and a metadata map")
        if trigger.get("type") == "prometheus":
            meta = trigger["metadata"]
            for key in ("serverAddress", "query", "threshold"):
                if not isinstance(meta.get(key), str) or not meta[key]:
                    problems.append(f"spec.triggers[{i}].metadata.{key} must be a non-empty string")
    for key in ("minReplicaCount", "maxReplicaCount"):
        if key in spec and not isinstance(spec[key], int):
            problems.append(f"spec.{key} must be an integer")
    return problems


def _check_service_monitor(obj: dict) -> list[str]:
    spec = obj.get("spec", {})
    problems = []
    if not spec.get("selector", {}).get("matchLabels"):
        problems.append("spec.selector.matchLabels is missing")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        problems.append("spec.endpoints is empty")
    for i, endpoint in enumerate(endpoints):
        if not endpoint.get("port"):
            problems.append(f"spec.endpoints[{i}].port (a Service port name) is missing")
    return problems


CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): _check_scaled_object,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _check_service_monitor,
}


def validate_schema(obj: dict, version: str) -> tuple[list[str], bool]:
    """Problems with `obj` against the schema (or the CRD check), and whether it was a custom resource."""
    custom = CUSTOM_RESOURCES.get((obj.get("apiVersion"), obj.get("kind")))
    if custom is not None:
        return custom(obj), True
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        return [f"{path}: {exc.message}"], False
    except kv.SchemaNotFoundError:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {version} (a typo?)"], False
    return [], False


# --- the deployment contract --------------------------------------------------------------------------------------


def grpc_service_names() -> dict[str, str]:
    from tistudio.caption.v1 import caption_pb2
    from tistudio.preview.v1 import preview_pb2
    from tistudio.trainer.v1 import trainer_pb2

    return {
        "caption": caption_pb2.DESCRIPTOR.services_by_name["CaptionService"].full_name,
        "trainer": trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name,
        "preview": preview_pb2.DESCRIPTOR.services_by_name["PreviewService"].full_name,
    }


def _pod_problems(pod: dict) -> list[str]:
    problems = []
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod securityContext.seccompProfile.type is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false")
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name}: readOnlyRootFilesystem is not true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"container {name}: capabilities.drop is not [ALL]")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"container {name}: no {kind}.{resource}")
        if ":" not in container.get("image", "").rsplit("/", 1)[-1]:
            problems.append(f"container {name}: image {container.get('image')!r} has no tag")
    return problems


def _probe_problems(service: str, container: dict, full_name: str) -> list[str]:
    problems = []
    port = {"caption": 50051, "trainer": 50052, "preview": 50053}[service]
    expected = {"startupProbe": full_name, "readinessProbe": full_name, "livenessProbe": ""}
    for probe, service_name in expected.items():
        grpc = container.get(probe, {}).get("grpc")
        if grpc is None:
            problems.append(f"{probe} is not a native gRPC probe")
        elif grpc.get("port") != port or grpc.get("service", "") != service_name:
            problems.append(f"{probe} should ask port {port} for service {service_name!r}, not {grpc}")
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    if ports.get("grpc") != port or "metrics" not in ports:
        problems.append(f"ports should be named grpc ({port}) and metrics, got {ports}")
    return problems


def _env_value(container: dict, config: dict[str, str], name: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == name and "value" in entry:
            return entry["value"]
    return config.get(name)


def contract_problems(objects: list[dict], full_names: dict[str, str]) -> list[str]:
    problems = []
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}
    config = next(
        (
            o.get("data", {})
            for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tistudio-config")
        ),
        {},
    )
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] not in WORKLOADS:
            continue
        pod = obj["spec"]["template"]["spec"]
        problems += [f"{where}: {p}" for p in _pod_problems(pod)]
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            for ref in _config_refs(container, pod):
                if ref not in rendered and not (ref[0] == "Secret" and ref[1] in EXTERNAL_SECRETS):
                    problems.append(
                        f"{where}: reads {ref[0]} {ref[1]}, which is neither rendered nor an external Secret"
                    )
        name = obj["metadata"]["name"]
        if obj["kind"] != "Deployment" or name not in SERVICES:
            continue
        container = next(c for c in pod["containers"] if c["name"] == name)
        problems += [f"{where}: {p}" for p in _probe_problems(name, container, full_names[name])]
        drain = float(_env_value(container, config, "TISTUDIO_DRAIN_SECONDS") or 5)
        grace = float(_env_value(container, config, "TISTUDIO_GRACE_SECONDS") or 30)
        if pod.get("terminationGracePeriodSeconds", 30) <= drain + grace:
            problems.append(f"{where}: terminationGracePeriodSeconds is not above drain {drain} + grace {grace}")
        if name == "trainer":
            if obj["spec"].get("strategy", {}).get("type") != "Recreate" or obj["spec"].get("replicas") != 1:
                problems.append(f"{where}: the trainer must be one replica with strategy Recreate")
            if not _env_value(container, config, "TISTUDIO_PREVIEW_ADDRESS"):
                problems.append(f"{where}: TISTUDIO_PREVIEW_ADDRESS is not set")
        if ("PodDisruptionBudget", name) not in rendered:
            problems.append(f"{where}: no PodDisruptionBudget")
    return problems


def _config_refs(container: dict, pod: dict) -> set[tuple[str, str]]:
    refs = set()
    for source in container.get("envFrom", []):
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source and not source[key].get("optional"):
                refs.add((kind, source[key]["name"]))
    for entry in container.get("env", []):
        value_from = entry.get("valueFrom", {})
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in value_from and not value_from[key].get("optional"):
                refs.add((kind, value_from[key]["name"]))
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            refs.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            refs.add(("ConfigMap", volume["configMap"]["name"]))
    return refs


# --- drift between the code and the operator material -------------------------------------------------------------

_METRIC = re.compile(r"\b(?:tistudio_(?:caption|trainer|preview)_[a-z_]+|grpc_server_[a-z_]+)\b")
_VARIABLE = re.compile(r"\bTISTUDIO_[A-Z0-9_]*[A-Z0-9]\b")


def exported_metrics() -> dict[str, set[str]]:
    """Each metric family the services register, with the series names Prometheus scrapes for it."""
    from prometheus_client import CollectorRegistry

    from services.caption.captioning.metrics import CaptionMetrics
    from services.common.metrics import RpcMetrics
    from services.preview.metrics import PreviewMetrics
    from services.trainer.metrics import TrainerMetrics

    registry = CollectorRegistry()
    for metrics in (RpcMetrics, CaptionMetrics, TrainerMetrics, PreviewMetrics):
        metrics(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name: {family.name + suffix for suffix in suffixes[family.type]} for family in registry.collect()}


def drift_problems(objects_by_target: dict[str, list[dict]]) -> list[str]:
    problems = []
    families = exported_metrics()
    series = set().union(*families.values())
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(_METRIC.findall(metrics_doc))
    for family, names in sorted(families.items()):
        if not documented & (names | {family}):
            problems.append(f"docs/metrics.md: metric {sorted(names)[0]} is exported but not documented")
    for name in sorted(documented - series - set(families)):
        problems.append(f"docs/metrics.md: {name} is not a metric the services export")
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tistudio.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for name in sorted({m for e in exprs for m in _METRIC.findall(e)} - series):
        problems.append(f"deploy/grafana/tistudio.json: {name} is not a series the services export")

    code_vars = set()
    for path in (ROOT / "services").rglob("*.py"):
        if "tests" in path.parts or "testing" in path.parts:
            continue
        code_vars |= set(_VARIABLE.findall(path.read_text()))
    # Read as f"TISTUDIO_{service}_PORT" in services/common/settings.py, so never spelt out in full.
    code_vars |= {f"TISTUDIO_{s.upper()}_{suffix}" for s in SERVICES for suffix in ("PORT", "METRICS_PORT")}
    config_doc = (ROOT / "docs" / "configuration.md").read_text()
    doc_vars = set(_VARIABLE.findall(config_doc))
    for name in sorted(code_vars - doc_vars):
        problems.append(f"docs/configuration.md: {name} is read by the services but not documented")
    for target, objects in objects_by_target.items():
        for obj in objects:
            text = json.dumps(obj.get("data", {})) if obj["kind"] == "ConfigMap" else json.dumps(obj.get("spec", {}))
            if obj["kind"] == "Secret":
                text = json.dumps(sorted(obj.get("data", {})) + sorted(obj.get("stringData", {})))
            for name in sorted(set(_VARIABLE.findall(text)) - code_vars):
                problems.append(
                    f"{target}: {obj['kind']}/{obj['metadata']['name']} sets {name}, which no service reads"
                )
    if not re.search(r"^# tests$", (ROOT / "requirements.txt").read_text(), re.M):
        problems.append("requirements.txt: the '# tests' line the Dockerfiles cut the runtime pins at is gone")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default="1.32", help="validate against this version (default 1.32)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every object checked")
    args = parser.parse_args(argv)
    if shutil.which("kubectl") is None:
        print("deploy-check: kubectl is not on PATH; install kubectl 1.27 or newer (it includes kustomize)")
        return 1
    started = time.monotonic()
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        objects_by_target = dict(zip(TARGETS, pool.map(render, TARGETS), strict=True))
    full_names = grpc_service_names()
    problems, checked, custom = [], 0, 0
    for target, objects in objects_by_target.items():
        for obj in objects:
            schema_problems, is_custom = validate_schema(obj, args.kubernetes_version)
            checked, custom = checked + 1, custom + is_custom
            where = f"{target}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            problems += [f"{where}: {p}" for p in schema_problems]
            if args.verbose:
                print(f"  {where}{' (custom resource)' if is_custom else ''}")
        problems += [f"{target}: {p}" for p in contract_problems(objects, full_names)]
    problems += drift_problems(objects_by_target)
    for problem in problems:
        print(f"deploy-check: {problem}")
    seconds = time.monotonic() - started
    verdict = f"{len(problems)} problem(s)" if problems else "ok"
    print(
        f"deploy-check: {verdict}: {len(TARGETS)} kustomizations, {checked} objects "
        f"({checked - custom} against Kubernetes {args.kubernetes_version} strict, {custom} custom resources), "
        f"{seconds:.1f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
