"""ECS requests, the CloudFormation template and the Dockerfiles, checked offline by
the tools AWS users run: botocore's own ECS service model (shapes and enums), moto's
ECS/EC2/IAM backends (register, run, create service), cfn-lint and hadolint.

Every generated task is also checked for what the images promise: the management
port is never mapped, every server runs as uid 10001 under ECS's init, its command
line is one the real ``mmsctl serve`` parser accepts, and its health check is
``mmsctl health`` against the container's own 127.0.0.1.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import botocore.session
import pytest
from botocore.validate import ParamValidator

from mmsctl import cli, server
from mmsctl.config import profiles
from mmsctl.docker import ecs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")
TEMPLATE = os.path.join(DOCKER, "ecs", "cluster.yaml")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmsctl:cpu"
MODELS = (("efficientnet-lite0", "efficientnet-lite0.mar"),)
MANAGEMENT_PORTS = {ecs.MANAGEMENT_PORT, ecs.MANAGEMENT_PORT + ecs.SIDE_PORT_OFFSET}
ROLE = "arn:aws:iam::123456789012:role/%s"

# Each case: TaskOptions fields on top of a cpu-latency task of 2 vCPUs.
CASES = {
    "cpu-latency": {},
    "cpu-throughput-awsvpc": {"profile": "cpu-throughput", "network_mode": "awsvpc", "cpu": 4096, "vcpus": None},
    "ei-task": {"profile": "ei", "accelerator": "eia2.medium", "task_role_arn": ROLE % "ecs-ei-task-role"},
    "ei-side-by-side": {"profile": "ei", "accelerator": "eia2.large", "side_by_side": True, "cpu": 2048,
                        "memory": 4096, "vcpus": None},
    "ei-instance": {"profile": "ei", "ei_attachment": "instance"},
    "gpu": {"profile": "gpu", "gpus": 2, "vcpus": 8},
    "dynamic-port-logs-host-store": {"host_port": 0, "log_group": "/ecs/mmsctl", "region": "eu-west-1",
                                     "host_model_store": "/opt/mmsctl/models", "family": "mmsctl-custom"},
}


def options(**changes):
    fields = dict(profile="cpu-latency", image=IMAGE, models=MODELS, vcpus=2,
                  execution_role_arn=ROLE % "ecsTaskExecutionRole")
    fields.update(changes)
    return ecs.TaskOptions(**fields)


def neuron_options(**changes):
    fields = dict(image=IMAGE, models=MODELS, vcpus=4, execution_role_arn=ROLE % "ecsTaskExecutionRole")
    fields.update(changes)
    return ecs.NeuronOptions(**fields)


def all_task_definitions():
    tasks = {name: ecs.task_definition(options(**case)) for name, case in CASES.items()}
    tasks["inf1-neuron2"] = ecs.neuron_task_definition(neuron_options(devices=2))
    tasks["inf1-neuron-rtd"] = ecs.neuron_task_definition(neuron_options(neuron_rtd_image="neuron-rtd:1.0"))
    return tasks


# -- botocore's model -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ecs_model():
    return botocore.session.get_session().get_service_model("ecs")


def enum_errors(value, shape, path="request"):
    """Values outside the model's enum lists (ParamValidator does not check enums)."""
    errors = []
    if shape.type_name == "structure":
        for key, item in value.items():
            errors += enum_errors(item, shape.members[key], "%s.%s" % (path, key))
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            errors += enum_errors(item, shape.member, "%s[%d]" % (path, index))
    elif shape.type_name == "map":
        for key, item in value.items():
            errors += enum_errors(item, shape.value, "%s[%r]" % (path, key))
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        errors.append("%s=%r is not one of %s" % (path, value, shape.enum))
    return errors


def check_against_model(model, operation, request):
    shape = model.operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert enum_errors(request, shape) == []


@pytest.mark.parametrize("name", sorted(list(CASES) + ["inf1-neuron2", "inf1-neuron-rtd"]))
def test_task_definitions_fit_botocores_ecs_model(ecs_model, name):
    check_against_model(ecs_model, "RegisterTaskDefinition", all_task_definitions()[name])


def test_the_enum_check_catches_what_param_validator_lets_through(ecs_model):
    task = ecs.task_definition(options())
    task["networkMode"] = "bridged"
    task["containerDefinitions"][0]["resourceRequirements"] = [{"type": "TPU", "value": "1"}]
    shape = ecs_model.operation_model("RegisterTaskDefinition").input_shape
    assert not ParamValidator().validate(task, shape).has_errors()
    assert len(enum_errors(task, shape)) == 2


def test_services_fit_botocores_ecs_model(ecs_model):
    tasks = all_task_definitions()
    check_against_model(ecs_model, "CreateService", ecs.service(tasks["cpu-latency"], "mmsctl", "web", 2))
    check_against_model(ecs_model, "CreateService", ecs.service(
        tasks["cpu-throughput-awsvpc"], "mmsctl", "web", 3, revision=4, subnets=["subnet-1", "subnet-2"],
        security_groups=["sg-1"], target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:"
        "targetgroup/mmsctl/0123456789abcdef"))


# -- what every generated task promises ---------------------------------------------------------------
def server_containers(task):
    return [c for c in task["containerDefinitions"] if c.get("entryPoint", [])[:1] == ["mmsctl"]]


@pytest.mark.parametrize("name", sorted(list(CASES) + ["inf1-neuron2", "inf1-neuron-rtd"]))
def test_no_task_maps_the_management_port_or_runs_as_root(name):
    task = all_task_definitions()[name]
    servers = server_containers(task)
    assert servers
    for container in task["containerDefinitions"]:
        for mapping in container.get("portMappings", []):
            assert mapping["containerPort"] not in MANAGEMENT_PORTS, container["name"]
            assert mapping.get("hostPort") not in MANAGEMENT_PORTS, container["name"]
    for container in servers:
        assert container["user"] == "10001:10001"
        assert container["linuxParameters"]["initProcessEnabled"] is True
        assert not container.get("privileged")


@pytest.mark.parametrize("name", sorted(CASES))
def test_container_commands_are_what_mmsctl_serve_and_health_accept(name):
    task = all_task_definitions()[name]
    parser = cli.build_parser()
    containers = server_containers(task)
    assert containers, "task %s has no mmsctl serve container" % name
    for container in containers:
        args = parser.parse_args(container["entryPoint"][1:] + container["command"])
        assert args.func is cli.serve.cmd_serve and args.foreground and args.public
        assert args.model_store == ecs.CONTAINER_MODEL_STORE and dict(args.models) == dict(MODELS)
        assert getattr(args, "management_host", "127.0.0.1") == "127.0.0.1"
        assert [m["containerPort"] for m in container["portMappings"]] == [args.inference_port]
        # the environment in the task is the profile the server inside computes
        profile = profiles.build_profile(args.profile, vcpus=args.vcpus, gpus=args.gpus, openmp=args.openmp,
                                         unset_ecs_metadata=args.unset_ecs_metadata)
        profile, _ = profiles.plan_models(profile, [profiles.ModelRequest(n) for n, _ in args.models])
        assert {e["name"]: e["value"] for e in container["environment"]} == profile.environment
        check = container["healthCheck"]["command"]
        assert check[0] == "CMD"
        health = parser.parse_args(check[2:])
        assert health.func is cli.manage.cmd_health and health.names == [n for n, _ in MODELS]
        assert health.management_url == "http://127.0.0.1:%d" % args.management_port


def test_ei_task_attaches_the_accelerator_to_the_server():
    task = ecs.task_definition(options(profile="ei", accelerator="eia2.medium"))
    assert task["inferenceAccelerators"] == [{"deviceName": "device_1", "deviceType": "eia2.medium"}]
    (container,) = task["containerDefinitions"]
    assert container["resourceRequirements"] == [{"type": "InferenceAccelerator", "value": "device_1"}]
    assert "--unset-ecs-metadata" not in container["command"]
    assert task["requiresCompatibilities"] == ["EC2"]


def test_side_by_side_adds_a_plain_cpu_server_on_its_own_ports():
    task = ecs.task_definition(options(profile="ei", accelerator="eia2.medium", side_by_side=True, cpu=2048,
                                       vcpus=None))
    accelerated, plain = task["containerDefinitions"]
    assert accelerated["resourceRequirements"] and "resourceRequirements" not in plain
    assert plain["command"][plain["command"].index("--profile") + 1] == "cpu-latency"
    ports = [(c["portMappings"][0]["containerPort"], c["portMappings"][0]["hostPort"]) for c in (accelerated, plain)]
    assert ports == [(8080, 8080), (8090, 8090)]
    assert [c["cpu"] for c in (accelerated, plain)] == [1024, 1024]
    assert [c["command"][c["command"].index("--vcpus") + 1] for c in (accelerated, plain)] == ["1", "1"]
    awsvpc = ecs.task_definition(options(profile="ei", accelerator="eia2.medium", side_by_side=True,
                                         network_mode="awsvpc"))
    # one network namespace: distinct container ports, no host ports
    assert [c["portMappings"] for c in awsvpc["containerDefinitions"]] == [
        [{"containerPort": 8080, "protocol": "tcp"}], [{"containerPort": 8090, "protocol": "tcp"}]]


def test_instance_attached_ei_runs_the_server_without_the_ecs_metadata_variables(tmp_path):
    task = ecs.task_definition(options(profile="ei", ei_attachment="instance"))
    (container,) = task["containerDefinitions"]
    assert "inferenceAccelerators" not in task and "resourceRequirements" not in container
    args = cli.build_parser().parse_args(container["entryPoint"][1:] + container["command"])
    assert args.unset_ecs_metadata
    profile = profiles.build_profile("ei", vcpus=2, unset_ecs_metadata=True)
    assert profile.unset_environment == profiles.ECS_METADATA_VARIABLES
    ecs_environment = {"ECS_CONTAINER_METADATA_URI": "http://169.254.170.2/v3/x",
                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x", "PATH": "/usr/bin"}
    env = server.server_environment(profile, str(tmp_path), base=ecs_environment)
    assert "ECS_CONTAINER_METADATA_URI" not in env and "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env


def test_neuron_variants_map_devices_or_share_the_runtime_socket():
    direct = ecs.neuron_task_definition(neuron_options(devices=2))
    (container,) = direct["containerDefinitions"]
    assert [d["hostPath"] for d in container["linuxParameters"]["devices"]] == ["/dev/neuron0", "/dev/neuron1"]
    assert direct["placementConstraints"][0]["expression"] == "attribute:ecs.instance-type =~ inf1.*"
    sidecar = ecs.neuron_task_definition(neuron_options(neuron_rtd_image="neuron-rtd:1.0"))
    server_def, rtd = sidecar["containerDefinitions"]
    assert "devices" not in server_def["linuxParameters"] and rtd["linuxParameters"]["devices"]
    assert server_def["mountPoints"] == rtd["mountPoints"] == [{"sourceVolume": "neuron-sock",
                                                               "containerPath": "/sock"}]
    assert {"name": "NEURON_RTD_ADDRESS", "value": "unix:/sock/neuron-rtd.sock"} in server_def["environment"]
    assert rtd["command"][-1] == "unix:/sock/neuron-rtd.sock"
    assert server_def["memoryReservation"] + rtd["memoryReservation"] == int(sidecar["memory"])


@pytest.mark.parametrize("changes, message", [
    ({"profile": "ei"}, "needs --accelerator"),
    ({"accelerator": "eia2.medium"}, "needs --profile ei"),
    ({"profile": "ei", "accelerator": "eia1.medium"}, "ECS task definitions take"),
    ({"profile": "ei", "accelerator": "eia2.medium", "ei_attachment": "instance"}, "one or the other"),
    ({"vcpus": None}, "--vcpus N"),
    ({"side_by_side": True}, "already the CPU server"),
    ({"network_mode": "awsvpc", "host_port": 9000}, "drop --host-port"),
    ({"models": ()}, "--models"),
    ({"models": (("m", "s3://bucket/m.mar"),)}, "not a path or URL"),
    ({"family": "bad family"}, "family"),
    ({"memory": 64}, "at least 128"),
])
def test_options_ecs_would_refuse_are_refused_with_the_reason(changes, message):
    with pytest.raises(ecs.EcsError, match=re.escape(message)):
        ecs.task_definition(options(**changes))


def test_deployment_limits_follow_the_host_ports():
    static = ecs.task_definition(options())
    assert ecs.service(static, "c", "s", 1)["deploymentConfiguration"]["maximumPercent"] == 100
    assert ecs.service(static, "c", "s", 3)["deploymentConfiguration"]["minimumHealthyPercent"] == 50
    dynamic = ecs.task_definition(options(host_port=0))
    assert ecs.service(dynamic, "c", "s", 3)["deploymentConfiguration"]["maximumPercent"] == 200
    awsvpc = ecs.task_definition(options(network_mode="awsvpc"))
    with pytest.raises(ecs.EcsError, match="--subnets"):
        ecs.service(awsvpc, "c", "s", 1)
    with pytest.raises(ecs.EcsError, match="awsvpc"):
        ecs.service(static, "c", "s", 1, subnets=["subnet-1"])


# -- the AWS flow in moto ------------------------------------------------------------------------------
@pytest.fixture
def aws(aws_credentials):
    """moto's in-memory AWS with one c5.large container instance in cluster mmsctl."""
    import boto3
    from moto import mock_aws
    from moto.ec2 import utils as ec2_utils
    with mock_aws():
        clients = {name: boto3.client(name, region_name="us-east-1") for name in ("ecs", "ec2", "iam")}
        clients["ecs"].create_cluster(clusterName="mmsctl")
        image = clients["ec2"].describe_images()["Images"][0]["ImageId"]
        instance = boto3.resource("ec2", region_name="us-east-1").create_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="c5.large")[0]
        clients["ecs"].register_container_instance(
            cluster="mmsctl", instanceIdentityDocument=json.dumps(ec2_utils.generate_instance_identity_document(
                instance)))
        vpc = clients["ec2"].create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        clients["subnet"] = clients["ec2"].create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        clients["security_group"] = clients["ec2"].create_security_group(
            GroupName="mmsctl", Description="inference 8080", VpcId=vpc)["GroupId"]
        yield clients


def test_every_task_registers_and_runs_in_moto(aws):
    client = aws["ecs"]
    for name, task in all_task_definitions().items():
        registered = client.register_task_definition(**task)["taskDefinition"]
        assert registered["status"] == "ACTIVE" and registered["family"] == task["family"], name
        assert registered.get("inferenceAccelerators", []) == task.get("inferenceAccelerators", [])
        assert [c["name"] for c in registered["containerDefinitions"]] == [
            c["name"] for c in task["containerDefinitions"]]
        if name.startswith("inf1") or name == "gpu":
            continue  # moto's c5.large has no Inferentia chip or GPU to place them on
        if task["networkMode"] == "awsvpc":
            # moto 5.2.5's run_task fails on awsvpc ('NetworkInterface' has no 'private_dns_name'):
            # the awsvpc task goes through create_service, which needs its network configuration.
            request = ecs.service(task, "mmsctl", name, 1, subnets=[aws["subnet"]],
                                  security_groups=[aws["security_group"]])
            assert client.create_service(**request)["service"]["networkConfiguration"] == \
                request["networkConfiguration"]
            continue
        run = client.run_task(cluster="mmsctl", taskDefinition=registered["taskDefinitionArn"], launchType="EC2")
        assert run["failures"] == [] and run["tasks"][0]["lastStatus"] == "RUNNING", (name, run["failures"])
        client.stop_task(cluster="mmsctl", task=run["tasks"][0]["taskArn"], reason="test")


def test_a_fixed_host_port_allows_one_copy_per_instance_in_moto(aws):
    """Why deployment_configuration stops old copies first when the host port is fixed."""
    client = aws["ecs"]
    fixed = client.register_task_definition(**ecs.task_definition(options()))["taskDefinition"]
    first = client.run_task(cluster="mmsctl", taskDefinition=fixed["taskDefinitionArn"], launchType="EC2")
    assert first["tasks"]
    second = client.run_task(cluster="mmsctl", taskDefinition=fixed["taskDefinitionArn"], launchType="EC2")
    assert not second["tasks"]
    dynamic = client.register_task_definition(**ecs.task_definition(options(host_port=0, family="dyn")))
    arn = dynamic["taskDefinition"]["taskDefinitionArn"]
    assert client.run_task(cluster="mmsctl", taskDefinition=arn, launchType="EC2")["tasks"]


def test_service_keeps_the_desired_count_in_moto(aws, tmp_path, capsys):
    client = aws["ecs"]
    task = ecs.task_definition(options(host_port=0, cpu=1024, vcpus=None))
    client.register_task_definition(**task)
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps(task))
    assert cli.main(["ecs", "service", "--task-definition-file", str(path), "--cluster", "mmsctl",
                     "--desired-count", "2", "--service-name", "web"]) == 0
    request = json.loads(capsys.readouterr().out)
    created = client.create_service(**request)["service"]
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 2
    assert created["taskDefinition"].endswith("task-definition/%s:1" % task["family"])
    described = client.describe_services(cluster="mmsctl", services=["web"])["services"][0]
    assert described["deployments"][0]["desiredCount"] == 2
    assert described["deployments"][0]["status"] == "PRIMARY"


def test_iam_documents_are_accepted_by_moto(aws, capsys):
    iam = aws["iam"]
    documents = {}
    for kind in sorted(ecs.IAM_DOCUMENTS):
        assert cli.main(["ecs", "iam-policy", kind]) == 0
        documents[kind] = capsys.readouterr().out
    role = iam.create_role(RoleName="ecs-ei-task-role", AssumeRolePolicyDocument=documents["task-trust"])
    assert role["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"}
    iam.create_role(RoleName="ecsInstanceRole", AssumeRolePolicyDocument=documents["instance-trust"])
    policy = iam.create_policy(PolicyName="ei-connect", PolicyDocument=documents["ei-connect"])["Policy"]
    iam.attach_role_policy(RoleName="ecs-ei-task-role", PolicyArn=policy["Arn"])
    attached = iam.list_attached_role_policies(RoleName="ecs-ei-task-role")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["ei-connect"]
    assert json.loads(documents["ei-connect"])["Statement"][0]["Action"] == ["elastic-inference:Connect"]


# -- the CLI -----------------------------------------------------------------------------------------------
def test_cli_prints_the_task_definition(capsys):
    code = cli.main(["ecs", "task-definition", "--profile", "ei", "--accelerator", "eia2.medium", "--side-by-side",
                     "--image", IMAGE, "--cpu", "2048", "--memory", "4096", "--models",
                     "efficientnet-lite0=efficientnet-lite0.mar", "--execution-role-arn", ROLE % "exec",
                     "--task-role-arn", ROLE % "task"])
    assert code == 0
    task = json.loads(capsys.readouterr().out)
    assert task == ecs.task_definition(options(profile="ei", accelerator="eia2.medium", side_by_side=True,
                                               cpu=2048, memory=4096, vcpus=None, execution_role_arn=ROLE % "exec",
                                               task_role_arn=ROLE % "task"))


def test_cli_turns_refused_options_into_one_line_and_exit_2(capsys):
    code = cli.main(["ecs", "task-definition", "--profile", "ei", "--image", IMAGE, "--vcpus", "2",
                     "--models", "m=m.mar"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmsctl: error: profile ei needs --accelerator") and err.count("\n") == 1
    assert cli.main(["ecs", "service", "--task-definition-file", "/nonexistent.json", "--cluster", "c"]) == 2
    assert "cannot read task definition /nonexistent.json" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["task-definition", "neuron-task-definition", "service", "iam-policy"])
def test_every_ecs_command_has_help_with_an_example(action, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ecs", action, "--help"])
    assert exit_info.value.code == 0
    assert "example:\n  mmsctl ecs " + action in capsys.readouterr().out


# -- the CloudFormation template ----------------------------------------------------------------------------
def _tool(name):
    found = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        pytest.fail("%s is not installed: run scripts/bootstrap.sh (requirements/test.txt pins it)" % name)
    return found


@pytest.mark.slow
def test_cluster_template_passes_cfn_lint():
    out = subprocess.run([_tool("cfn-lint"), TEMPLATE], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_cfn_lint_refuses_ei_on_launch_templates_which_is_why_the_template_has_none(tmp_path):
    with open(TEMPLATE, encoding="utf-8") as handle:
        text = handle.read()
    anchor = "        InstanceType: !Ref InstanceType\n"
    assert anchor in text
    variant = tmp_path / "launch-template-ei.yaml"
    variant.write_text(text.replace(anchor, anchor + "        ElasticInferenceAccelerators:\n"
                                    "          - Type: eia2.medium\n            Count: 1\n", 1))
    out = subprocess.run([_tool("cfn-lint"), str(variant)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode != 0 and "E3002" in out.stdout and "ElasticInferenceAccelerators" in out.stdout


def test_cluster_template_publishes_only_the_inference_port_as_a_non_root_user():
    from cfnlint.decode import decode
    template, matches = decode(TEMPLATE)
    assert not matches
    resources = template["Resources"]
    types = {resource["Type"] for resource in resources.values()}
    assert {"AWS::ECS::Cluster", "AWS::EC2::LaunchTemplate", "AWS::AutoScaling::AutoScalingGroup",
            "AWS::ECS::TaskDefinition", "AWS::ECS::Service"} <= types
    (container,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["User"] == "10001:10001" and container["LinuxParameters"]["InitProcessEnabled"] is True
    assert [m["ContainerPort"] for m in container["PortMappings"]] == [8080]
    assert container["HealthCheck"]["Command"][:5] == ["CMD", "mmsctl", "health", "--management-url",
                                                       "http://127.0.0.1:8081"]
    assert container["EntryPoint"] == ["mmsctl", "serve"] and "--public" in container["Command"]
    ingress = resources["InstanceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ingress] == [(8080, 8080)]
    user_data = json.dumps(resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    assert "ECS_CLUSTER=${Cluster}" in user_data


# -- the Dockerfiles --------------------------------------------------------------------------------------
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.ei"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pass_hadolint_at_error_level(name):
    out = subprocess.run([_tool("hadolint"), "--no-color", "--failure-threshold", "error",
                          os.path.join(DOCKER, name)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def instructions(name):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    with open(os.path.join(DOCKER, name), encoding="utf-8") as handle:
        text = re.sub(r"\\\n\s*", " ", handle.read())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_run_mmsctl_as_non_root_and_publish_only_the_inference_port(name):
    steps = instructions(name)
    users = [args for op, args in steps if op == "USER"]
    assert users == ["10001:10001"]
    assert [args for op, args in steps if op == "EXPOSE"] == ["8080 8082"]  # inference, metrics exporter
    assert [args for op, args in steps if op == "VOLUME"] == ['["/models"]']
    (health,) = [args for op, args in steps if op == "HEALTHCHECK"]
    assert health.endswith('CMD ["mmsctl", "health"]')
    (entry,) = [json.loads(args) for op, args in steps if op == "ENTRYPOINT"]
    assert entry[:6] == ["tini", "--", "mmsctl", "serve", "--foreground", "--public"]
    assert entry[entry.index("--management-port") + 1] == "8081"
    assert entry[-2:] == ["--profile", {"Dockerfile.cpu": "cpu-latency", "Dockerfile.gpu": "gpu",
                                        "Dockerfile.ei": "ei"}[name]]
    assert not [op for op, _ in steps if op == "CMD"]  # arguments after the image name are appended
    # what runs after USER is never root again
    assert [op for op, _ in steps].index("USER") > max(i for i, (op, _) in enumerate(steps) if op == "RUN")
