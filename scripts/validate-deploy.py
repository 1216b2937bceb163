#!/usr/bin/env python3
"""Validate deploy/kubernetes offline: render each overlay with kustomize
(`kubectl kustomize`), validate every core object against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), the KEDA
ScaledObject against its documented spec, and check what no schema can:
that the pieces agree with each other and with weir (probe paths, ports,
the manifest's NATS stream and durable, the metric the HPA reads).

usage: validate-deploy.py DEPLOY_DIR [--metrics FILE]
  --metrics FILE  a /metrics text from a running weir: the HPA's metric
                  and label must be in it.
Exit 0 when valid; 1 with one line per problem otherwise.
"""

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes these manifests are meant for, and the newest schemas.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Each overlay, and the autoscaler it must hold.
OVERLAYS = {"keda": "ScaledObject", "hpa": "HorizontalPodAutoscaler"}

# KEDA's ScaledObject (keda.sh/v1alpha1), as its documentation specifies it
# (https://keda.sh/docs/latest/reference/scaledobject-spec/): KEDA's CRD is
# not among the Kubernetes schemas.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {"type": "object", "required": ["name"]},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
# The nats-jetstream scaler's parameters (https://keda.sh/docs/latest/scalers/nats-jetstream/).
JETSTREAM_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}
JETSTREAM_OPTIONAL = {"activationLagThreshold", "useHttps"}


class Problems(list):
    def at(self, where, what):
        self.append(f"{where}: {what}")


def render(deploy, overlay):
    out = subprocess.run(["kubectl", "kustomize", str(deploy / overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {deploy / overlay} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(objects, kind):
    return [o for o in objects if o.get("kind") == kind]


def validate_schemas(overlay, objects, problems):
    for obj in objects:
        where = f"{overlay}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") == "ScaledObject":
            for error in jsonschema.Draft202012Validator(SCALED_OBJECT).iter_errors(obj):
                problems.at(where, f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
            for trigger in obj.get("spec", {}).get("triggers", []):
                if trigger.get("type") != "nats-jetstream":
                    continue
                keys = set(trigger.get("metadata", {}))
                for missing in sorted(JETSTREAM_REQUIRED - keys):
                    problems.at(where, f"the nats-jetstream trigger needs `{missing}`")
                for unknown in sorted(keys - JETSTREAM_REQUIRED - JETSTREAM_OPTIONAL):
                    problems.at(where, f"the nats-jetstream trigger has no parameter `{unknown}`")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(map(str, error.path))
                problems.at(where, f"Kubernetes {version}: {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.at(where, f"Kubernetes {version} has no schema for {obj.get('apiVersion')} {obj.get('kind')}")


def manifest_of(objects, deployment, problems):
    """The weir.toml the Deployment serves, from the ConfigMap it mounts."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container.get("args", [])
    if len(args) < 2 or args[0] != "serve":
        problems.at("Deployment", f"args must start with `serve MANIFEST`, not {args}")
        return None, container
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    mount = mounts.get(args[1])
    if mount is None:
        problems.at("Deployment", f"the manifest {args[1]} is not mounted")
        return None, container
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    config_map = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
    found = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == config_map]
    if not found or mount.get("subPath") not in found[0].get("data", {}):
        problems.at("Deployment", f"{args[1]} comes from ConfigMap {config_map}, which has no {mount.get('subPath')}")
        return None, container
    return tomllib.loads(found[0]["data"][mount["subPath"]]), container


def check_deployment(objects, problems):
    deployments = by_kind(objects, "Deployment")
    if len(deployments) != 1:
        problems.at("overlay", f"one Deployment expected, found {len(deployments)}")
        return None, None
    deployment = deployments[0]
    manifest, container = manifest_of(objects, deployment, problems)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if p.get("name")}
    numbers = {p["containerPort"] for p in container.get("ports", [])}

    def exposed(port):
        return port is not None and (port in ports or port in numbers)

    probes = [
        ("readinessProbe", "/v2/health/ready", True),
        ("livenessProbe", "/v2/health/live", True),
        ("startupProbe", "/v2/health/live", False),
    ]
    for probe, path, required in probes:
        if probe not in container and not required:
            continue
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problems.at("Deployment", f"{probe} must GET {path} (weir's health endpoint), not {get.get('path')}")
        if not exposed(get.get("port")):
            problems.at("Deployment", f"{probe} probes port {get.get('port')}, which the container does not expose")
    args = container.get("args", [])
    if "--listen" in args:
        listen = args[args.index("--listen") + 1]
        if int(listen.rsplit(":", 1)[1]) not in numbers:
            problems.at("Deployment", f"weir listens on {listen}, but the container exposes {sorted(numbers)}")
    if "--no-auth" in args:
        problems.at("Deployment", "--no-auth: every caller could do everything; give --keys")
    for service in by_kind(objects, "Service"):
        for port in service["spec"].get("ports", []):
            if not exposed(port.get("targetPort")):
                problems.at("Service", f"targetPort {port.get('targetPort')} is not a port of the weir container")
        selector = service["spec"].get("selector", {})
        labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.at("Service", f"selector {selector} does not select weir's pods {labels}")
    return deployment, manifest


def check_target(kind, ref, deployment, problems):
    if ref.get("name") != deployment["metadata"]["name"] or ref.get("kind", "Deployment") != "Deployment":
        problems.at(kind, f"scaleTargetRef {ref} is not the weir Deployment")


def check_keda(objects, deployment, manifest, values, problems):
    consumers = [
        (name, p["triggers"]["nats"]) for name, p in manifest.get("pipelines", {}).items() if "nats" in p.get("triggers", {})
    ]
    for scaled in by_kind(objects, "ScaledObject"):
        check_target("ScaledObject", scaled["spec"]["scaleTargetRef"], deployment, problems)
        for trigger in scaled["spec"]["triggers"]:
            meta = trigger.get("metadata", {})
            pairs = [(c["stream"], c["durable"]) for _, c in consumers]
            if (meta.get("stream"), meta.get("consumer")) not in pairs:
                problems.at(
                    "ScaledObject",
                    f"stream {meta.get('stream')} / consumer {meta.get('consumer')} is no NATS consumer of weir.toml "
                    f"({pairs})",
                )
            if not re.fullmatch(r"[1-9][0-9]*", meta.get("lagThreshold", "")):
                problems.at("ScaledObject", f"lagThreshold `{meta.get('lagThreshold')}` is not a positive count")
            port = meta.get("natsServerMonitoringEndpoint", "").rsplit(":", 1)[-1]
            monitor = values.get("config", {}).get("monitor", {})
            if not monitor.get("enabled") or str(monitor.get("port", 8222)) != port:
                problems.at("ScaledObject", f"reads monitoring port {port}, which nats-values.yaml does not serve")
        if scaled["spec"].get("minReplicaCount", 0) != 0:
            problems.at("ScaledObject", "minReplicaCount should be 0: scale to zero when the queue is empty")


def check_hpa(objects, deployment, metrics, problems):
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        check_target("HorizontalPodAutoscaler", hpa["spec"]["scaleTargetRef"], deployment, problems)
        for metric in hpa["spec"].get("metrics", []):
            pods = metric.get("pods")
            if not pods:
                continue
            name = pods["metric"]["name"]
            labels = pods["metric"].get("selector", {}).get("matchLabels", {})
            if metrics is not None:
                series = [line for line in metrics.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]
                wanted = [f'{k}="{v}"' for k, v in labels.items()]
                if not any(all(w in line for w in wanted) for line in series):
                    problems.at("HorizontalPodAutoscaler", f"weir exports no {name} with {labels}")


def check_nats(manifest, values, problems):
    cluster = values.get("config", {}).get("cluster", {})
    nodes = cluster.get("replicas", 1) if cluster.get("enabled") else 1
    if not values.get("config", {}).get("jetstream", {}).get("enabled"):
        problems.at("nats-values.yaml", "JetStream must be enabled (config.jetstream.enabled)")
    for name, pipeline in manifest.get("pipelines", {}).items():
        replicas = pipeline.get("triggers", {}).get("nats", {}).get("replicas", 1)
        if replicas > nodes:
            problems.at("weir.toml", f"pipeline {name} asks for {replicas} stream replicas on {nodes} NATS nodes")
    servers = manifest.get("triggers", {}).get("nats", {}).get("url", "").split(",")
    if len(servers) < nodes:
        problems.at("weir.toml", f"triggers.nats.url lists {len(servers)} of the {nodes} NATS nodes")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("deploy", type=Path)
    parser.add_argument("--metrics", type=Path)
    args = parser.parse_args()
    metrics = args.metrics.read_text() if args.metrics else None
    values = yaml.safe_load((args.deploy / "nats-values.yaml").read_text())
    problems = Problems()
    counted = 0
    for overlay, scaler in OVERLAYS.items():
        objects = render(args.deploy, overlay)
        counted += len(objects)
        if not by_kind(objects, scaler):
            problems.at(overlay, f"the overlay renders no {scaler}")
        validate_schemas(overlay, objects, problems)
        deployment, manifest = check_deployment(objects, problems)
        if deployment is None or manifest is None:
            continue
        check_keda(objects, deployment, manifest, values, problems)
        check_hpa(objects, deployment, metrics, problems)
        check_nats(manifest, values, problems)
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    kinds = f"{len(OVERLAYS)} overlays, {counted} objects, Kubernetes {' and '.join(KUBERNETES_VERSIONS)}"
    print(f"deploy: valid ({kinds})")


if __name__ == "__main__":
    main()
