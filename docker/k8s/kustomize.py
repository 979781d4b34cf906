"""The objects of ``mmsctl k8s render`` and the kustomize folder they are written to.

See the package's docstring for what every rendered Deployment guarantees.
"""
import json
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from mmsctl import autoscaling, models_file
from mmsctl.docker import ecs
from mmsctl.errors import UsageError

INFERENCE_PORT = ecs.INFERENCE_PORT
MANAGEMENT_PORT = ecs.MANAGEMENT_PORT
METRICS_PORT = 8082
MODEL_STORE = ecs.CONTAINER_MODEL_STORE
#: the ConfigMap with models.toml is mounted here (a folder of its own: /models may be a read-only volume)
MODELS_CONFIG_DIR = "/etc/mmsctl"
MODELS_FILE = "models.toml"
#: the image's user (docker/Dockerfile.*) and its home, where MMSCTL_STATE_DIR points
USER_ID = 10001
HOME = "/home/mms"
STATE_DIR = HOME + "/state"
#: tini is the image's PID 1: it passes SIGTERM to `mmsctl serve --foreground` (ECS has initProcessEnabled instead)
INIT = ["tini", "--"]
DEFAULT_MEMORY_MIB = ecs.DEFAULT_MEMORY_MIB
DRAIN_TIMEOUT = ecs.DRAIN_TIMEOUT
#: seconds between SIGTERM's drain and SIGKILL for stopping MMS (the ECS stopTimeout's margin)
STOP_MARGIN = ecs.STOP_MARGIN
#: the load time when neither --load-seconds nor the bench report's cold start gives one: the ECS health
#: check's start period
DEFAULT_LOAD_SECONDS = ecs.HEALTH_CHECK["startPeriod"]
#: the startupProbe allows this many times the load time, and at least MIN_STARTUP_SECONDS
STARTUP_FACTOR = 3
MIN_STARTUP_SECONDS = 60
STARTUP_PERIOD = 5
READINESS = {"periodSeconds": 5, "timeoutSeconds": 4, "failureThreshold": 2, "successThreshold": 1}
LIVENESS = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3, "successThreshold": 1}
#: the HPA's pods metric, served by the prometheus-adapter rule of prometheus-adapter.yaml
METRIC = "mmsctl_requests_per_second"
SERIES = "mmsctl_requests_total"
RATE_WINDOW = "2m"
SCALE_DOWN_STABILIZATION = 300
DEFAULT_MIN_REPLICAS = 2
DEFAULT_MAX_REPLICAS = 10
#: what the CPU backstop aims for without a bench report (the ECS rule at the default headroom 0.7)
DEFAULT_CPU_TARGET = 80
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PVC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PROFILES = ("cpu-latency", "cpu-throughput", "gpu")

__all__ = ["K8sOptions", "K8sError", "check_profile", "validate", "to_yaml", "DEFAULT_MEMORY_MIB", "manifests", "render", "write", "files_of", "load_seconds_from_report",
           "startup_probe", "hpa_average_value", "container_command", "models_toml", "METRIC", "SERIES",
           "INFERENCE_PORT", "MANAGEMENT_PORT", "METRICS_PORT", "STOP_MARGIN", "DRAIN_TIMEOUT",
           "DEFAULT_LOAD_SECONDS", "DEFAULT_MIN_REPLICAS", "DEFAULT_MAX_REPLICAS", "STARTUP_FACTOR", "MIN_STARTUP_SECONDS", "STARTUP_PERIOD", "MODELS_CONFIG_DIR",
           "MODELS_FILE", "STATE_DIR", "HOME", "USER_ID", "INIT", "SCALE_DOWN_STABILIZATION"]


class K8sError(UsageError):
    """Options that do not make a valid Kubernetes deployment; the message says which and why."""


@dataclass(frozen=True)
class K8sOptions:
    """What ``mmsctl k8s render`` asks for.

    ``models`` are (name, file.mar) pairs and ``file_models`` the ModelSpecs of a models
    file (read and checked by the caller): both end up in the ConfigMap's models.toml.
    ``vcpus`` is the pod's CPU (requests = limits) and what the profile plans for;
    ``memory`` MiB likewise. ``size`` is :func:`mmsctl.autoscaling.sizing` of a bench
    report (None: the HPA scales on CPU only). ``archives_claim``: a
    PersistentVolumeClaim mounted read-only at /models (default: the archives are in
    the image). ``load_seconds``: the models' load time (the startupProbe's budget).
    """

    image: str
    profile: str
    vcpus: int
    models: Tuple[Tuple[str, str], ...] = ()
    file_models: Tuple = ()
    name: Optional[str] = None
    namespace: Optional[str] = None
    memory: int = DEFAULT_MEMORY_MIB
    gpus: int = 1
    openmp: str = "gnu"
    drain_timeout: int = DRAIN_TIMEOUT
    load_seconds: float = DEFAULT_LOAD_SECONDS
    load_source: str = "default (the ECS health check's start period)"
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    size: Optional[dict] = None
    archives_claim: Optional[str] = None
    service_monitor: bool = False


def default_name(options):
    return "mmsctl-%s" % options.profile


def _task(options):
    """The ECS TaskOptions of the same server: validated and planned by the ECS code, one rule for both."""
    return ecs.TaskOptions(profile=options.profile, image=options.image, models=(), file_models=(
        tuple(options.file_models) + tuple(_pair_specs(options.models))), models_file=MODELS_CONFIG_DIR + "/"
        + MODELS_FILE, network_mode="awsvpc", memory=options.memory, vcpus=options.vcpus, gpus=options.gpus,
        openmp=options.openmp, metrics_port=METRICS_PORT, drain_timeout=options.drain_timeout)


def _pair_specs(pairs):
    return models_file.from_pairs(pairs) if pairs else []


def check_profile(name):
    if name == "ei":
        raise K8sError("profile ei: Elastic Inference is retired and has no Kubernetes device; use cpu-latency, "
                       "cpu-throughput or gpu")
    if name not in PROFILES:
        raise K8sError("unknown profile %r: choose one of %s" % (name, ", ".join(PROFILES)))


def validate(options):
    """Raise :class:`K8sError` for options Kubernetes, the profile or the server would refuse."""
    check_profile(options.profile)
    if options.vcpus is None or options.vcpus < 1:
        raise K8sError("--vcpus N is required (at least 1): the pod's CPU request and limit, and what the profile "
                       "plans its workers and OpenMP threads for")
    name = options.name or default_name(options)
    if not DNS_LABEL.match(name):
        raise K8sError("--name %r: up to 52 lower-case letters, digits and '-', starting and ending with a letter "
                       "or digit (a DNS label; kustomize appends a hash to the ConfigMap's name)" % name)
    if options.namespace is not None and not NAMESPACE.match(options.namespace):
        raise K8sError("--namespace %r: a DNS label (lower-case letters, digits and '-')" % options.namespace)
    if options.archives_claim is not None and not PVC_NAME.match(options.archives_claim):
        raise K8sError("--archives-claim %r: the name of a PersistentVolumeClaim" % options.archives_claim)
    if not 1 <= options.min_replicas <= options.max_replicas:
        raise K8sError("--min-replicas %d and --max-replicas %d: need 1 <= min <= max"
                       % (options.min_replicas, options.max_replicas))
    if not 0 <= options.drain_timeout <= 3600:
        raise K8sError("--drain-timeout %d: 0 to 3600 seconds" % options.drain_timeout)
    if not options.load_seconds or options.load_seconds <= 0 or not math.isfinite(options.load_seconds):
        raise K8sError("--load-seconds %r: the models' load time in seconds, above 0" % options.load_seconds)
    if options.size is not None and (options.size["profile"] != options.profile
                                     or options.size["vcpus"] != options.vcpus):
        raise K8sError("the bench sizing is for %s on %s vCPUs, the pod runs %s on %d"
                       % (options.size["profile"], options.size["vcpus"], options.profile, options.vcpus))
    # the image, the models and their names, the memory, the OpenMP runtime: the ECS rules (the ECS-only ceiling
    # of the stop timeout does not apply: Kubernetes has no maximum grace period)
    try:
        ecs.validate(replace(_task(options), drain_timeout=0))
    except ecs.EcsError as err:
        raise K8sError(str(err))
    return options


def container_command(options):
    """(profile, words): the ``mmsctl serve`` command line of the ECS task for the same server."""
    task = _task(options)
    profile = ecs.task_profile(task, options.profile, options.vcpus)
    words = ecs.serve_command(profile, (), INFERENCE_PORT, MANAGEMENT_PORT, METRICS_PORT, options.drain_timeout,
                              task.models_file)
    return profile, words


def models_toml(specs, source=None):
    """The text of models.toml for ModelSpecs (read back by ``mmsctl.models_file.load``)."""
    lines = ["# The models of the server, rendered by `mmsctl k8s render`%s." % (" from " + source if source else ""),
             "# Read by `mmsctl serve --models-file %s/%s`; the archives are files in %s."
             % (MODELS_CONFIG_DIR, MODELS_FILE, MODEL_STORE)]
    for spec in specs:
        lines.append("")
        lines.append("[%s]" % json.dumps(spec.name))
        for key, value in spec.settings().items():
            lines.append("%s = %s" % (key, json.dumps(value)))
    return "\n".join(lines) + "\n"


def load_seconds_from_report(report, profile):
    """The longest serve-to-first-answer of the report's server cold starts with ``profile``, else None."""
    spans = [entry.get("serve_to_first_answer_s") for entry in report.get("cold_start") or []
             if entry.get("kind") == "server" and entry.get("config") == profile]
    spans = [span for span in spans if isinstance(span, (int, float)) and span > 0]
    return max(spans) if spans else None


def startup_probe(load_seconds):
    """A startupProbe on /readyz that allows STARTUP_FACTOR x the load time (at least MIN_STARTUP_SECONDS)."""
    budget = max(MIN_STARTUP_SECONDS, STARTUP_FACTOR * load_seconds)
    return {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": STARTUP_PERIOD,
            "timeoutSeconds": READINESS["timeoutSeconds"], "successThreshold": 1,
            "failureThreshold": int(math.ceil(budget / STARTUP_PERIOD))}


def hpa_average_value(size):
    """The pods metric's target: the ECS target (requests per target per minute) / 60, in milli-requests/s."""
    return "%dm" % int(round(size["requests_per_target_per_minute"] * 1000 / 60.0))


def _labels(name):
    return {"app.kubernetes.io/name": "mmsctl", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "server"}


def _selector(name):
    return {"app.kubernetes.io/name": "mmsctl", "app.kubernetes.io/instance": name}


def _meta(name, annotations=None, **extra):
    meta = {"name": name, "labels": _labels(name)}
    if annotations:
        meta["annotations"] = annotations
    meta.update(extra)
    return meta


def deployment(options, profile, words):
    name = options.name or default_name(options)
    # Guaranteed QoS: requests = limits, the CPUs being the vCPUs the profile planned workers x threads for
    resources = {"cpu": str(profile.vcpus), "memory": "%dMi" % options.memory}
    if profile.name == "gpu":
        resources["nvidia.com/gpu"] = str(profile.gpus)
    environment = dict(profile.environment, MMSCTL_STATE_DIR=STATE_DIR, HOME=HOME)
    container = {
        "name": "mmsctl",
        "image": options.image,
        "command": INIT + words[:2],
        "args": words[2:],
        "env": [{"name": key, "value": value} for key, value in sorted(environment.items())],
        "ports": [{"name": "http", "containerPort": INFERENCE_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "startupProbe": startup_probe(options.load_seconds),
        "readinessProbe": dict({"httpGet": {"path": "/readyz", "port": "metrics"}}, **READINESS),
        "livenessProbe": dict({"httpGet": {"path": "/healthz", "port": "metrics"}}, **LIVENESS),
        "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "privileged": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "state", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "models-file", "mountPath": MODELS_CONFIG_DIR, "readOnly": True}],
    }
    volumes = [{"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
               {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
               {"name": "models-file", "configMap": {"name": name + "-models"}}]
    if options.archives_claim:
        container["volumeMounts"].append({"name": "archives", "mountPath": MODEL_STORE, "readOnly": True})
        volumes.append({"name": "archives", "persistentVolumeClaim": {"claimName": options.archives_claim,
                                                                      "readOnly": True}})
    annotations = {
        "mmsctl/profile": "%s on %d vCPU%s: %s" % (profile.name, profile.vcpus, "" if profile.vcpus == 1 else "s",
                                                   "; ".join(plan.describe() for plan in profile.plan)),
        "mmsctl/startup": "startupProbe allows %d s: %d x the load time %.1f s (%s), at least %d s" % (
            startup_probe(options.load_seconds)["failureThreshold"] * STARTUP_PERIOD, STARTUP_FACTOR,
            options.load_seconds, options.load_source, MIN_STARTUP_SECONDS),
        "mmsctl/archives": ("PersistentVolumeClaim %s, read-only at %s" % (options.archives_claim, MODEL_STORE)
                            if options.archives_claim else "in the image, at %s" % MODEL_STORE),
    }
    pod = {
        "metadata": {"labels": _labels(name), "annotations": {
            "prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics"}},
        "spec": {
            # the server drains for --drain-timeout after SIGTERM, then stops MMS (at most STOP_MARGIN s)
            "terminationGracePeriodSeconds": options.drain_timeout + STOP_MARGIN,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                                "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": volumes,
        },
    }
    # no replicas: the HPA owns the count (a replicas field would reset it at every apply)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, annotations),
            "spec": {"selector": {"matchLabels": _selector(name)}, "revisionHistoryLimit": 10,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": pod}}


def service(options):
    name = options.name or default_name(options)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name),
            "spec": {"type": "ClusterIP", "selector": _selector(name), "ports": [
                {"name": "http", "port": INFERENCE_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]}}


def hpa(options):
    name = options.name or default_name(options)
    size = options.size
    metrics = []
    annotations = {}
    if size is not None:
        metrics.append({"type": "Pods", "pods": {"metric": {"name": METRIC},
                                                  "target": {"type": "AverageValue",
                                                             "averageValue": hpa_average_value(size)}}})
        annotations["mmsctl/sizing"] = (autoscaling.explain(size) + "; Kubernetes: %d / 60 = %s requests/s per pod"
                                        % (size["requests_per_target_per_minute"], hpa_average_value(size)))
        cpu = size["cpu_target_percent"]
    else:
        annotations["mmsctl/sizing"] = ("no bench report: CPU only; `mmsctl k8s render --bench-report "
                                        "DIR/report.json` adds the requests-per-second target")
        cpu = DEFAULT_CPU_TARGET
    metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                               "averageUtilization": cpu}}})
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, annotations),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": options.min_replicas, "maxReplicas": options.max_replicas,
                     "metrics": metrics,
                     "behavior": {
                         "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                             {"type": "Pods", "value": 2, "periodSeconds": 60},
                             {"type": "Percent", "value": 100, "periodSeconds": 60}]},
                         # scale in slowly: a pod that goes needs its drain, and a new one its load time
                         "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_STABILIZATION, "selectPolicy": "Min",
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}


def pdb(options):
    name = options.name or default_name(options)
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(name)}}}


def network_policy(options):
    name = options.name or default_name(options)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(name),
            "spec": {"podSelector": {"matchLabels": _selector(name)}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": INFERENCE_PORT},
                                            {"protocol": "TCP", "port": METRICS_PORT}]}]}}


def service_monitor(options):
    name = options.name or default_name(options)
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": _meta(name),
            "spec": {"selector": {"matchLabels": _selector(name)},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}


def adapter_rules():
    """prometheus-adapter's rule for the HPA's pods metric (its Helm chart's ``rules.custom``)."""
    return {"rules": {"custom": [{
        "seriesQuery": '%s{namespace!="",pod!=""}' % SERIES,
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": "^%s$" % SERIES, "as": METRIC},
        "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[%s])) by (<<.GroupBy>>)" % RATE_WINDOW}]}}


def manifests(options):
    """{file name: object} of the folder's resources, and the models.toml text: (objects, models text)."""
    validate(options)
    profile, words = container_command(options)
    objects = {"deployment.yaml": deployment(options, profile, words), "service.yaml": service(options),
               "hpa.yaml": hpa(options), "pdb.yaml": pdb(options), "networkpolicy.yaml": network_policy(options)}
    if options.service_monitor:
        objects["servicemonitor.yaml"] = service_monitor(options)
    specs = list(options.file_models) + _pair_specs(options.models)
    return objects, models_toml(specs)


def kustomization(options, resources):
    name = options.name or default_name(options)
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if options.namespace:
        document["namespace"] = options.namespace
    document["resources"] = list(resources)
    # a generated name (NAME-models-HASH): a changed models.toml rolls the Deployment out
    # (generatorOptions, not a generator's own options: the kustomize 2.0 of Debian's kubectl 1.20 reads only these)
    document["generatorOptions"] = {"labels": _labels(name)}
    document["configMapGenerator"] = [{"name": name + "-models", "files": [MODELS_FILE]}]
    return document


# -- YAML, without a YAML library on the operator side ---------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def to_yaml(value, indent=0):
    """Block-style YAML of dicts, lists and scalars (tests/test_k8s.py reads it back with PyYAML)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append("%s%s:" % (pad, _scalar(key)))
                lines.append(to_yaml(item, indent + 2 if isinstance(item, dict) else indent))
            else:
                lines.append("%s%s: %s" % (pad, _scalar(key), _scalar(item) if not isinstance(item, (dict, list))
                                           else ("{}" if isinstance(item, dict) else "[]")))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 2).splitlines()
                lines.append("%s- %s" % (pad, inner[0].lstrip()))
                lines.extend(inner[1:])
            else:
                lines.append("%s- %s" % (pad, _scalar(item)))
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


HEADER = "# Rendered by `mmsctl k8s render`; see docs/kubernetes.md. Edit the options and render again.\n"
ADAPTER_HEADER = """# prometheus-adapter's rule for the HorizontalPodAutoscaler's pods metric %s.
# Not a resource of this kustomization: the rule belongs to the adapter's own release. Merge it into the
# adapter's Helm values (helm upgrade prometheus-adapter prometheus-community/prometheus-adapter --reuse-values
# -f THIS-FILE), or put the rule (the entry under `custom:`) in the `rules:` list of the adapter's config.yaml.
# Prometheus must scrape the pods' port 8082 with `namespace` and `pod` labels: the ServiceMonitor does, and so
# does a kubernetes-pods scrape job reading the pods' prometheus.io/* annotations if it names them so.
""" % METRIC


def render(options):
    """{file name: text} of the kustomize folder."""
    objects, models_text = manifests(options)
    files = {name: HEADER + to_yaml(obj) + "\n" for name, obj in objects.items()}
    files["kustomization.yaml"] = HEADER + to_yaml(kustomization(options, list(objects))) + "\n"
    files[MODELS_FILE] = models_text
    if options.size is not None:
        files["prometheus-adapter.yaml"] = ADAPTER_HEADER + to_yaml(adapter_rules()) + "\n"
    return files


def files_of(output_dir):
    return sorted(os.listdir(output_dir))


def write(options, output_dir):
    """Render, then write the folder (created if missing; refused when it holds other files)."""
    files = render(options)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise K8sError("--output-dir %s is a file, not a folder" % output_dir)
    if os.path.isdir(output_dir):
        others = sorted(set(os.listdir(output_dir)) - set(files) - {"servicemonitor.yaml", "prometheus-adapter.yaml"})
        if others:
            raise K8sError("--output-dir %s holds other files (%s): give an empty or new folder"
                           % (output_dir, ", ".join(others[:3])))
        for stale in ("servicemonitor.yaml", "prometheus-adapter.yaml"):  # from an earlier render with them
            if stale not in files and os.path.exists(os.path.join(output_dir, stale)):
                os.remove(os.path.join(output_dir, stale))
    os.makedirs(output_dir, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(output_dir, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return sorted(files)
