"""``mmsctl k8s render``: the kustomize folder builds with ``kubectl kustomize`` (offline), every object
validates with ``kubernetes-validate --strict`` against a current Kubernetes, the probes, ports and
security settings are what docs/kubernetes.md says, the HPA's target is the one ``mmsctl ecs autoscaling``
computes from the same bench report, bad arguments get one line and nothing written, and the rendered
command runs for real with its probes answering as a kubelet calls them: as a local ``mmsctl serve`` with
the rendered arguments, and in the CPU image under podman with the Deployment's command, arguments,
environment, user, read-only root, volumes, capabilities and grace period. No cluster runs here.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from mmsctl import autoscaling, cli, models_file
from mmsctl.archives import mar
from mmsctl.docker import ecs, k8s

from helpers import CONTAINER_LABEL, CONTAINER_TEST_TIMEOUT_S, free_port, record_timings
from test_ecs_scale_out import LEVELS, write_report

KUBERNETES_VERSION = "1.37.0"  # the newest schemas kubernetes-validate ships (its wheel, offline)
IMAGE = "registry.example.com/mmsctl-models:1"
MODELS = ("efficientnet-lite0=efficientnet-lite0.mar",)
CORE_FILES = ["deployment.yaml", "hpa.yaml", "kustomization.yaml", "models.toml", "networkpolicy.yaml", "pdb.yaml",
              "service.yaml"]


def kubectl():
    tool = shutil.which("kubectl")
    if tool is None:
        pytest.skip("kubectl is missing: scripts/test.sh installs Debian's kubernetes-client")
    return tool


def render(tmp_path, *words, folder="k8s", image=IMAGE):
    """``mmsctl k8s render`` through the CLI; (exit code, the folder)."""
    out = tmp_path / folder
    code = cli.main(["k8s", "render", "--image", image, "--output-dir", str(out)] + list(words))
    return code, out


def load(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def build(folder):
    """``kubectl kustomize`` of the folder: the objects kubectl would apply."""
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects):
    return {obj["kind"]: obj for obj in objects}


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("bench"), LEVELS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, report_path):
    tmp = tmp_path_factory.mktemp("render")
    code, folder = render(tmp, "--profile", "cpu-latency", "--vcpus", "2", "--memory", "3072", "--models", *MODELS,
                          "--bench-report", report_path, "--latency-p99-ms", "250", "--drain-timeout", "25",
                          "--service-monitor", "--namespace", "serving")
    assert code == 0
    return folder


# -- the folder --------------------------------------------------------------------------------------------
def test_folder_has_kustomization_and_one_file_per_object(rendered):
    assert sorted(os.listdir(rendered)) == sorted(CORE_FILES + ["prometheus-adapter.yaml", "servicemonitor.yaml"])
    kustomization = load(rendered, "kustomization.yaml")
    assert kustomization["namespace"] == "serving"
    assert sorted(kustomization["resources"]) == sorted(["deployment.yaml", "hpa.yaml", "networkpolicy.yaml",
                                                         "pdb.yaml", "service.yaml", "servicemonitor.yaml"])
    for name in kustomization["resources"]:  # one object per file
        with open(os.path.join(rendered, name), encoding="utf-8") as handle:
            assert len([doc for doc in yaml.safe_load_all(handle) if doc]) == 1, name


def test_yaml_reads_back_as_the_objects():
    options = k8s.K8sOptions(image=IMAGE, profile="cpu-throughput", vcpus=4, models=(("a", "a.mar"), ("b.x", "b.mar")),
                             archives_claim="archives")
    objects, _ = k8s.manifests(options)
    files = k8s.render(options)
    assert objects  # non-empty
    for name, obj in objects.items():
        assert yaml.safe_load(files[name]) == obj, name
    # scalars YAML would read otherwise are quoted
    assert yaml.safe_load(k8s.to_yaml({"a": "true", "b": "8080", "c": "--x", "d": "1Gi",
                                                         "e": ["no", "", "a: b"]})) == {
        "a": "true", "b": "8080", "c": "--x", "d": "1Gi", "e": ["no", "", "a: b"]}


def test_kubectl_kustomize_builds_and_every_object_validates_strictly(rendered):
    objects = build(rendered)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget",
                     "Service", "ServiceMonitor"]
    assert all(obj["metadata"]["namespace"] == "serving" for obj in objects)
    checked = 0
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":  # a CRD of the Prometheus Operator: not in Kubernetes' schemas
            with pytest.raises(SchemaNotFoundError):
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked == 6
    # the generated ConfigMap (NAME-models-HASH) is the one the Deployment mounts, holding models.toml
    config_map = by_kind(objects)["ConfigMap"]
    volumes = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert config_map["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]
    assert config_map["metadata"]["name"].startswith("mmsctl-cpu-latency-models-")
    with open(rendered / "models.toml", encoding="utf-8") as handle:
        assert config_map["data"]["models.toml"] == handle.read()


def test_the_command_line_tool_validates_the_build_and_catches_a_wrong_field(rendered, tmp_path):
    built = tmp_path / "built.yaml"
    objects = [obj for obj in build(rendered) if obj["kind"] != "ServiceMonitor"]
    built.write_text(yaml.safe_dump_all(objects))
    tool = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    result = subprocess.run([tool, "--strict", "-k", KUBERNETES_VERSION, str(built)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 6
    # the same check refuses what a cluster would: a misspelt probe field, a port name too long
    wrong = by_kind(objects)["Deployment"]
    wrong["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["portt"] = 8082
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


# -- the Deployment ------------------------------------------------------------------------------------------
def container_of(folder):
    return load(folder, "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]


def test_probes_are_on_readyz_and_healthz_of_port_8082(rendered):
    container = container_of(rendered)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080, "metrics": 8082}
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    # sized from the load time: no cold start in this report, so the default (the ECS start period)
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == k8s.STARTUP_FACTOR * k8s.DEFAULT_LOAD_SECONDS


def test_startup_probe_is_sized_from_the_reports_cold_start(tmp_path, report_path):
    report = json.loads(open(report_path, encoding="utf-8").read())
    report["cold_start"] = [{"config": "cpu-latency", "kind": "server", "batch_size": 1, "serve_to_first_answer_s": 31.4},
                            {"config": "cpu-latency", "kind": "server", "batch_size": 1, "serve_to_first_answer_s": 12.0},
                            {"config": "cpu-throughput", "kind": "server", "serve_to_first_answer_s": 99.0},
                            {"config": "cpu-latency", "kind": "in-process", "serve_to_first_answer_s": 99.0}]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    code, folder = render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS,
                          "--bench-report", str(path))
    assert code == 0
    startup = container_of(folder)["startupProbe"]
    assert startup["failureThreshold"] == math.ceil(3 * 31.4 / 5)  # 95 s: 3 x the longest cpu-latency server start
    code, folder = render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS,
                          "--load-seconds", "4", folder="short")
    assert code == 0 and container_of(folder)["startupProbe"]["failureThreshold"] == 60 // 5  # at least 60 s


def test_grace_period_is_the_drain_plus_the_stop_margin(rendered):
    pod = load(rendered, "deployment.yaml")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    drain = int(args[args.index("--drain-timeout") + 1])
    assert drain == 25 and pod["terminationGracePeriodSeconds"] == drain + 10 == 25 + ecs.STOP_MARGIN


def test_requests_equal_limits_from_the_profile(rendered):
    container = container_of(rendered)
    resources = container["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "2", "memory": "3072Mi"}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["OMP_NUM_THREADS"] == "2" and env["MMSCTL_THREADS"] == "efficientnet-lite0=2"  # cpu-latency on 2
    args = container["args"]
    assert args[args.index("--vcpus") + 1] == "2" and args[args.index("--profile") + 1] == "cpu-latency"


def test_gpu_pods_ask_for_the_profiles_gpus(tmp_path):
    code, folder = render(tmp_path, "--profile", "gpu", "--vcpus", "4", "--gpus", "2", "--models", *MODELS)
    assert code == 0
    resources = container_of(folder)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "2"
    for obj in build(folder):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_runs_non_root_on_a_read_only_root_with_empty_dirs_for_state_and_tmp(rendered):
    pod = load(rendered, "deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["privileged"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    env = {item["name"]: item["value"] for item in container["env"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    state_mount = [path for path in mounts if env["MMSCTL_STATE_DIR"].startswith(path + "/")]
    assert state_mount and "emptyDir" in volumes[mounts[state_mount[0]]]
    # the archives are the image's (no volume at /models) unless --archives-claim
    assert "/models" not in mounts


def test_archives_from_a_claim_are_mounted_read_only(tmp_path):
    code, folder = render(tmp_path, "--profile", "cpu-throughput", "--vcpus", "2", "--models", *MODELS,
                          "--archives-claim", "model-archives")
    assert code == 0
    pod = load(folder, "deployment.yaml")["spec"]["template"]["spec"]
    mount = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/models"]
    assert mount and mount[0]["readOnly"] is True
    claim = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]["persistentVolumeClaim"]
    assert claim == {"claimName": "model-archives", "readOnly": True}


def test_container_command_is_the_ecs_tasks_and_mmsctl_serve_accepts_it(rendered):
    container = container_of(rendered)
    assert container["command"] == ["tini", "--", "mmsctl", "serve"]
    # the ECS task definition of the same server (awsvpc, metrics on 8082, the models file in the ConfigMap)
    task = ecs.task_definition(ecs.TaskOptions(
        profile="cpu-latency", image=IMAGE, models=(), vcpus=2, memory=3072, network_mode="awsvpc", metrics_port=8082,
        drain_timeout=25, models_file="/etc/mmsctl/models.toml",
        file_models=tuple(models_file.from_pairs([m.split("=") for m in MODELS]))))["containerDefinitions"][0]
    assert container["command"][2:] == task["entryPoint"] and container["args"] == task["command"]
    assert sorted(container["env"][i]["name"] for i in range(len(container["env"]))) == sorted(
        [e["name"] for e in task["environment"]] + ["HOME", "MMSCTL_STATE_DIR"])
    args = cli.build_parser().parse_args(container["command"][3:] + container["args"])
    assert args.func.__name__ == "cmd_serve" and args.foreground and args.metrics_port == 8082
    assert args.management_port == 8081 and args.models_file == "/etc/mmsctl/models.toml"
    # the ConfigMap's models.toml is a models file mmsctl serve reads
    specs = models_file.load(str(rendered / "models.toml"))
    assert [(s.name, s.archive) for s in specs] == [("efficientnet-lite0", "efficientnet-lite0.mar")]


def test_a_models_file_keeps_its_settings(tmp_path):
    source = tmp_path / "models.toml"
    source.write_text('[resnet-18]\narchive = "resnet-18.mar"\nbatch_size = 4\nmax_batch_delay_ms = 20\n'
                      'share = 0.5\n\n["tiny.v2"]\narchive = "tiny.mar"\nengine = "onnxruntime"\n')
    code, folder = render(tmp_path, "--profile", "cpu-throughput", "--vcpus", "4", "--models-file", str(source),
                          "--models", "extra=extra.mar")
    assert code == 0
    assert models_file.load(str(folder / "models.toml")) == models_file.load(str(source)) + models_file.from_pairs(
        [("extra", "extra.mar")])


# -- Service, NetworkPolicy, PDB -------------------------------------------------------------------------------
def test_service_and_network_policy_open_8080_and_8082_never_8081(rendered):
    service = load(rendered, "service.yaml")
    assert sorted(port["port"] for port in service["spec"]["ports"]) == [8080, 8082]
    policy = load(rendered, "networkpolicy.yaml")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]]
    assert sorted(allowed) == [8080, 8082]
    assert policy["spec"]["podSelector"]["matchLabels"] == service["spec"]["selector"]
    container = container_of(rendered)
    assert 8081 not in [port["containerPort"] for port in container["ports"]]
    for name in os.listdir(rendered):  # 8081 is only the management API's port inside the pod, on 127.0.0.1
        text = (rendered / name).read_text()
        if name != "deployment.yaml":
            assert "8081" not in text, name
    pdb = load(rendered, "pdb.yaml")
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    monitor = load(rendered, "servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


# -- the HorizontalPodAutoscaler ------------------------------------------------------------------------------
def quantity(text):
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_hpa_target_is_what_ecs_autoscaling_computes_from_the_same_report(rendered, report_path, capsys):
    hpa = load(rendered, "hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert len(pods) == 1 and len(cpu) == 1
    assert pods[0]["pods"]["metric"]["name"] == "mmsctl_requests_per_second"
    capsys.readouterr()
    code = cli.main(["ecs", "autoscaling", "--bench-report", report_path, "--profile", "cpu-latency", "--vcpus", "2",
                     "--latency-p99-ms", "250", "--print", "overrides"])
    overrides = dict(word.split("=") for word in capsys.readouterr().out.split())
    assert code == 0
    per_minute = int(overrides["RequestsPerTargetPerMinute"])
    size = autoscaling.sizing(autoscaling.load_report(report_path), "cpu-latency", 2, latency_p99_ms=250)
    assert per_minute == size["requests_per_target_per_minute"] == math.floor(0.7 * 18.0 * 60)  # c=2 meets 250 ms
    per_second = quantity(pods[0]["pods"]["target"]["averageValue"])
    assert round(per_second * 60) == per_minute and abs(per_second - per_minute / 60) <= 0.0005
    assert cpu[0]["resource"]["target"]["averageUtilization"] == int(overrides["CpuTargetPercent"])
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["spec"]["scaleTargetRef"]["name"] == load(rendered, "deployment.yaml")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 10


def test_prometheus_adapter_rule_serves_the_hpas_metric_from_requests_total(rendered):
    rules = load(rendered, "prometheus-adapter.yaml")["rules"]["custom"]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["seriesQuery"].startswith("mmsctl_requests_total{")
    assert rule["name"]["as"] == load(rendered, "hpa.yaml")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert "rate(<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    # the exporter's counter is exposed under that series name
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily

    class One:
        def collect(self):
            family = CounterMetricFamily("mmsctl_requests", "as mmsctl.metrics.exporter names it",
                                         labels=["model", "code"])
            family.add_metric(["m", "200"], 3)
            yield family
    registry = CollectorRegistry()
    registry.register(One())
    assert 'mmsctl_requests_total{code="200",model="m"} 3.0' in generate_latest(registry).decode()
    assert 'CounterMetricFamily("mmsctl_requests"' in open(
        os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "metrics", "exporter.py")).read()


def test_without_a_bench_report_the_hpa_scales_on_cpu_only(tmp_path):
    code, folder = render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS,
                          "--min-replicas", "1", "--max-replicas", "3")
    assert code == 0
    assert sorted(os.listdir(folder)) == CORE_FILES  # no adapter rule without a pods metric
    hpa = load(folder, "hpa.yaml")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)


# -- bad arguments ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    broken = folder / "broken.toml"
    broken.write_text('[a]\narchive = "a.mar"\nworkers = "two"\n')
    not_toml = folder / "not.toml"
    not_toml.write_text("[a\narchive = \n")
    reports = {}
    for name, options in (("throughput", {"profile": "cpu-throughput"}), ("four", {"vcpus": 4})):
        sub = folder / name
        sub.mkdir()
        reports[name] = write_report(sub, LEVELS, **options)
    return {"broken": str(broken), "not_toml": str(not_toml), **reports}


@pytest.mark.parametrize("words, message", [
    (["--profile", "cpu-fast", "--vcpus", "2", "--models", *MODELS], "unknown profile 'cpu-fast'"),
    (["--profile", "ei", "--vcpus", "2", "--models", *MODELS], "Elastic Inference is retired"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models-file", "{broken}"], "key 'workers': must be a whole"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models-file", "{not_toml}"], "not valid TOML"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--bench-report", "{throughput}"],
     "measured profile cpu-throughput, the task runs cpu-latency"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--bench-report", "{four}"],
     "was measured with 4 vCPUs, the task has 2"),
    (["--profile", "cpu-latency", "--vcpus", "2"], "--models NAME=FILE.mar or --models-file"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", "a=models/a.mar"], "must be a .mar file name"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--name", "Web_1"], "--name 'Web_1'"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--min-replicas", "3", "--max-replicas", "2"],
     "need 1 <= min <= max"),
    (["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--headroom", "0.5"], "pass the report"),
])
def test_bad_arguments_get_one_line_and_write_nothing(tmp_path, odd_inputs, capsys, words, message):
    words = [word.format(**odd_inputs) for word in words]
    code, folder = render(tmp_path, *words)
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("mmsctl: error: ") and message in err, err
    assert not folder.exists()


def test_a_folder_with_other_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "k8s"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, _ = render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS)
    err = capsys.readouterr().err
    assert code != 0 and "holds other files (notes.txt)" in err and os.listdir(folder) == ["notes.txt"]
    shutil.rmtree(folder)
    assert render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS)[0] == 0
    assert render(tmp_path, "--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS)[0] == 0  # again


# -- the rendered command, run for real --------------------------------------------------------------------------
LOAD_S = 6.0
SLOW_LOADER = '''import json
import time


def handle(data, context):
    if data is None:  # MMS loads the model: the handler's initialization
        time.sleep(%r)
        return None
    return [json.dumps({"ok": True}) for _ in data]
''' % LOAD_S


def kubelet_get(port, path):
    """What a kubelet's httpGet probe sees: the status, or a connection failure (a failed probe)."""
    try:
        return requests.get("http://127.0.0.1:%d%s" % (port, path), timeout=4).status_code
    except requests.RequestException:
        return "refused"


@pytest.mark.server
@pytest.mark.slow
def test_rendered_command_serves_and_its_probes_answer_as_the_kubelet_expects(tmp_path):
    store = tmp_path / "models"
    store.mkdir()
    manifest = {"runtime": "python", "model": {"modelName": "slowload", "handler": "slowload:handle"},
                "modelServerVersion": "1.0", "implementationVersion": "1.0", "specificationVersion": "1.0"}
    mar.write_mar(str(store / "slowload.mar"), {mar.MANIFEST_PATH: json.dumps(manifest).encode(),
                                                "slowload.py": SLOW_LOADER.encode()})
    code, folder = render(tmp_path, "--profile", "cpu-throughput", "--vcpus", "1", "--models", "slowload=slowload.mar",
                          "--drain-timeout", "3", "--load-seconds", str(LOAD_S))
    assert code == 0
    container = container_of(folder)
    pod = load(folder, "deployment.yaml")["spec"]["template"]["spec"]
    # the container's own paths and ports, mapped onto this machine (as the pod's mounts would)
    ports = {8080: free_port(), 8081: free_port(), 8082: free_port()}
    paths = {"/models": str(store), "/etc/mmsctl/models.toml": str(folder / "models.toml")}
    args = []
    for word in container["args"]:
        args.append(str(ports[int(word)]) if word.isdigit() and int(word) in ports else paths.get(word, word))
    env = dict(os.environ, **{item["name"]: item["value"] for item in container["env"]})
    env.update(MMSCTL_STATE_DIR=str(tmp_path / "state"), HOME=str(tmp_path))
    mmsctl = os.path.join(os.path.dirname(sys.executable), "mmsctl")
    assert container["command"][:3] == ["tini", "--", "mmsctl"]
    log = open(tmp_path / "serve.out", "w+")
    process = subprocess.Popen([mmsctl] + container["command"][3:] + args, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    metrics = ports[8082]
    seen = {"/readyz": [], "/healthz": []}
    reasons = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            for path in seen:
                status = kubelet_get(metrics, path)
                if not seen[path] or seen[path][-1] != status:
                    seen[path].append(status)
                if path == "/readyz" and status == 503:
                    reasons.add(requests.get("http://127.0.0.1:%d/readyz" % metrics, timeout=4).json()["reason"])
            if seen["/readyz"][-1] == 200:
                break
            time.sleep(0.5)
        log.seek(0)
        output = log.read()
        assert seen["/readyz"][-1] == 200, (seen, output[-3000:])
        # while the model loads: readiness (and so the startup probe) fails with 503, then passes
        assert 503 in seen["/readyz"] and seen["/readyz"].index(503) < seen["/readyz"].index(200), seen
        assert "loading the models" in reasons, reasons
        body = requests.get("http://127.0.0.1:%d/readyz" % metrics, timeout=4).json()
        assert body["ready"] is True
        assert kubelet_get(metrics, "/healthz") == 200  # liveness once healthy
        answer = requests.post("http://127.0.0.1:%d/predictions/slowload" % ports[8080], data=b"x", timeout=30)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        # SIGTERM as the kubelet sends it: readiness fails at once, the process ends within the grace period
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        statuses = set()
        while process.poll() is None and time.monotonic() - started < pod["terminationGracePeriodSeconds"]:
            statuses.add(kubelet_get(metrics, "/readyz"))
            time.sleep(0.2)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < pod["terminationGracePeriodSeconds"]
        assert statuses and statuses <= {503, "refused"}, statuses
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        from mmsctl import server
        state_dir = str(tmp_path / "state")
        if os.path.exists(os.path.join(state_dir, server.STATE_FILE)):
            server.stop(server.ServerState.load(state_dir))
        log.close()


# -- the rendered container, run under podman as a kubelet would run it ------------------------------------------
def slowload_store(folder):
    """A model store with slowload.mar (its handler takes LOAD_S to load), readable by the image's user."""
    folder.mkdir()
    manifest = {"runtime": "python", "model": {"modelName": "slowload", "handler": "slowload:handle"},
                "modelServerVersion": "1.0", "implementationVersion": "1.0", "specificationVersion": "1.0"}
    mar.write_mar(str(folder / "slowload.mar"), {mar.MANIFEST_PATH: json.dumps(manifest).encode(),
                                                 "slowload.py": SLOW_LOADER.encode()})
    os.chmod(folder / "slowload.mar", 0o644)
    os.chmod(folder, 0o755)  # pytest's folders are 0700 root: the pod's uid 10001 reads the volume
    return folder


def podman_bytes(value):
    """A Kubernetes quantity of bytes (1Gi, 512Mi) as podman writes it (1g, 512m)."""
    number, unit = value[:-2], value[-2:]
    assert unit in ("Gi", "Mi") and number.isdigit(), value
    return number + unit[0].lower()


def podman_run_arguments(folder, store, configs, empty_dirs, name):
    """``podman run`` arguments that run the rendered Deployment's container as a kubelet would (its image's
    HEALTHCHECK off: a kubelet ignores it; podman's default seccomp profile is the RuntimeDefault), and the pod
    spec and container as rendered."""
    pod = load(folder, "deployment.yaml")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    container = pod["containers"][0]
    security, pod_security = container["securityContext"], pod["securityContext"]
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    assert security["runAsNonRoot"] is True and user not in (None, 0) and group is not None
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    limits = container["resources"]["limits"]
    args = ["run", "--detach", "--name", name, "--label", "%s=%d" % (CONTAINER_LABEL, os.getpid()),
            "--health-interval", "disable",
            "--user", "%d:%d" % (user, group), "--group-add", str(pod_security["fsGroup"]),
            # only the volumes are writable (podman's own tmpfs at /tmp, /run, /var/tmp off)
            "--read-only", "--read-only-tmpfs=false",
            "--cap-drop", ",".join(security["capabilities"]["drop"]),
            "--security-opt", "no-new-privileges",
            "--cpus", limits["cpu"], "--memory", podman_bytes(limits["memory"])]
    assert container["env"]
    for item in container["env"]:
        args += ["--env", "%s=%s" % (item["name"], item["value"])]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    kinds = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            # as a kubelet makes an emptyDir (medium ""): a new folder, 0777, group fsGroup with setgid,
            # bind-mounted. Not podman's --tmpfs: runc gives a tmpfs the mode of the image's folder it covers,
            # owned by root (/home/mms: 0755 root, unwritable), which is podman's behaviour, not Kubernetes'.
            # The kubelet enforces sizeLimit by eviction, not by the mount: nothing to map.
            empty = os.path.join(empty_dirs, mount["name"])
            os.makedirs(empty)
            os.chown(empty, 0, pod_security["fsGroup"])
            os.chmod(empty, 0o2777)
            args += ["--volume", "%s:%s:rw" % (empty, mount["mountPath"])]
            kinds.append("emptyDir")
        elif "configMap" in volume:  # one file per key, read-only
            args += ["--volume", "%s:%s:ro" % (configs[volume["configMap"]["name"]], mount["mountPath"])]
            kinds.append("configMap")
        elif "persistentVolumeClaim" in volume:  # the archives' volume
            assert mount.get("readOnly") is True and volume["persistentVolumeClaim"]["readOnly"] is True
            args += ["--volume", "%s:%s:ro" % (store, mount["mountPath"])]
            kinds.append("persistentVolumeClaim")
        else:
            pytest.fail("no podman equivalent for the volume %r" % volume)
    assert sorted(kinds) == ["configMap", "emptyDir", "emptyDir", "persistentVolumeClaim"], kinds
    args += ["--entrypoint", json.dumps(container["command"]), container["image"]] + container["args"]
    return args, pod, container


def config_map_folders(folder, base):
    """{ConfigMap name: a folder with its files}, from the kustomization's configMapGenerator."""
    folders = {}
    for generator in load(folder, "kustomization.yaml")["configMapGenerator"]:
        target = base / generator["name"]
        target.mkdir(parents=True)
        for name in generator["files"]:
            shutil.copyfile(folder / name, target / name)
            os.chmod(target / name, 0o644)
        os.chmod(target, 0o755)
        folders[generator["name"]] = str(target)
    assert folders
    return folders


def probe(address, container, name):
    """A kubelet's httpGet probe of the container: the status, or 'refused' (a failed probe)."""
    spec = container[name]
    port = spec["httpGet"]["port"]
    if isinstance(port, str):
        port = {p["name"]: p["containerPort"] for p in container["ports"]}[port]
    try:
        return requests.get("http://%s:%d%s" % (address, port, spec["httpGet"]["path"]),
                            timeout=spec["timeoutSeconds"]).status_code
    except requests.RequestException:
        return "refused"


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.timeout(CONTAINER_TEST_TIMEOUT_S)  # counts the session's image build when this test is the first
def test_rendered_container_runs_under_podman_with_the_deployments_settings(podman, cpu_image, tmp_path, timings):
    """The Deployment's container of a folder rendered for the built CPU image, run by podman with what the
    kubelet would give it: command, args and env; runAsUser/runAsGroup and fsGroup; a read-only root with a
    new 0777 folder per emptyDir; the models.toml ConfigMap mounted read-only; the archives' claim as a read-only volume
    at /models; every capability dropped, no new privileges; the CPU and memory limits. Its probes, called on
    the container's address and ports, see 503 while the model loads, then 200; a prediction on the inference
    port answers; `podman stop` with the grace period ends it with status 0 (not a SIGKILL) within it."""
    store = slowload_store(tmp_path / "archives")
    code, folder = render(tmp_path, "--profile", "cpu-throughput", "--vcpus", "1", "--memory", "2048",
                          "--models", "slowload=slowload.mar", "--archives-claim", "model-archives",
                          "--drain-timeout", "3", "--load-seconds", "60", image=cpu_image)
    assert code == 0
    name = "mmsctl-test-%d-k8s" % os.getpid()
    args, pod, container = podman_run_arguments(folder, store, config_map_folders(folder, tmp_path / "configmaps"),
                                                str(tmp_path / "emptydirs"), name)
    assert container["image"] == cpu_image

    def logs():
        out = podman.run("logs", name, check=False)
        return (out.stdout + out.stderr)[-3000:]

    try:
        start = time.monotonic()
        podman.run(*args)
        address = podman.address(name)
        if not address:
            pytest.skip("container %s has no bridge address to probe" % name)
        # the startupProbe first (readiness and liveness wait for it), polled faster than its period
        startup = container["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        seen = []
        while time.monotonic() - start < budget:
            status = probe(address, container, "startupProbe")
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                break
            running = podman.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert running == "true", "the container exited:\n" + logs()
            time.sleep(0.5)
        ready_s = round(time.monotonic() - start, 1)
        assert seen and seen[-1] == 200, "not ready within the startupProbe's %d s: %s\n%s" % (budget, seen, logs())
        # loading: 503 from the exporter, then 200
        assert 503 in seen and seen.index(503) < seen.index(200), seen
        assert probe(address, container, "readinessProbe") == 200
        assert probe(address, container, "livenessProbe") == 200
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        answer = requests.post("http://%s:%d/predictions/slowload" % (address, ports["http"]), data=b"x", timeout=30)
        assert answer.status_code == 200 and answer.json() == {"ok": True}, answer.text
        # what the settings hold: uid 10001, nothing writable outside the volumes
        check = podman.run("exec", name, "sh", "-c", "id -u; touch /home/mms/w /tmp/w; touch /opt/w",
                           check=False)
        assert check.stdout.split() == [str(container["securityContext"]["runAsUser"])], check.stdout
        assert check.returncode != 0 and check.stderr.count("cannot touch") == 1, check.stderr
        assert "'/opt/w': Read-only file system" in check.stderr, check.stderr
        # SIGTERM with the grace period, as the kubelet stops a pod: readiness fails at once, the
        # container ends by itself (status 0, not 137 from SIGKILL) within the grace period
        grace = pod["terminationGracePeriodSeconds"]
        stopped = time.monotonic()
        stop = subprocess.Popen(podman.base + ["stop", "--time", str(grace), name], env=podman.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        statuses = []
        while True:
            statuses.append(probe(address, container, "readinessProbe"))
            if stop.poll() is not None:
                break
            time.sleep(0.2)
        _, stop_err = stop.communicate(timeout=grace + 30)
        stop_s = round(time.monotonic() - stopped, 2)
        assert stop.returncode == 0, stop_err
        code = podman.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", "exited %s after SIGTERM:\n%s" % (code, logs())
        assert stop_s < grace, (stop_s, grace)
        # 200 until podman has sent SIGTERM; from then on never ready again
        after = statuses[next((i for i, status in enumerate(statuses) if status != 200), len(statuses)):]
        assert after and set(after) <= {503, "refused"}, statuses
        record_timings(timings, k8s_pod_run_to_ready_seconds=ready_s, k8s_pod_startup_probe=seen,
                       k8s_pod_stop_seconds=stop_s, k8s_pod_readiness_while_stopping=statuses)
    finally:
        podman.run("rm", "--force", "--time", "2", name, check=False)


@pytest.mark.timeout(CONTAINER_TEST_TIMEOUT_S)  # counts the session's image build when this test is the first
def test_the_image_renders_the_same_folder(podman, cpu_image, tmp_path):
    """`mmsctl k8s render` inside the image (its user, a read-only root) writes what the host's writes."""
    words = ["--profile", "cpu-latency", "--vcpus", "2", "--models", *MODELS, "--archives-claim", "archives",
             "--service-monitor", "--namespace", "serving"]
    code, folder = render(tmp_path, *words, image=cpu_image)
    assert code == 0
    out = tmp_path / "inside"
    out.mkdir()
    os.chmod(out, 0o777)
    podman.run("run", "--rm", "--read-only", "--health-interval", "disable", "--volume", "%s:/out" % out,
               "--entrypoint", "mmsctl", cpu_image, "k8s", "render", "--image", cpu_image,
               "--output-dir", "/out/k8s", *words)
    names = sorted(os.listdir(folder))
    assert names and sorted(os.listdir(out / "k8s")) == names
    for name in names:
        assert (out / "k8s" / name).read_text() == (folder / name).read_text(), name
