"""The scale-out layout: docker/ecs/scale-out.yaml (cfn-lint and its structure, rule
by rule), the ELBv2 / Application Auto Scaling / ECS requests of
mmsctl.docker.ecs.scaling (botocore's own service models, then moto's backends),
and ``mmsctl ecs autoscaling`` on reports written by the bench code's own writer.
"""
import json
import os
import re
import shlex
import subprocess

import botocore.session
import pytest
from botocore.validate import ParamValidator

from mmsctl import autoscaling, bench, cli
from mmsctl.docker import ecs
from mmsctl.docker.ecs import scaling as ecs_scaling

from test_ecs import IMAGE, MODELS, ROLE, _tool, enum_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "docker", "ecs", "scale-out.yaml")
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/mmsctl/0123456789abcdef"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/mmsctl/fedcba9876543210"
LABEL = "app/mmsctl/0123456789abcdef/targetgroup/mmsctl/fedcba9876543210"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"


# -- the template ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template():
    from cfnlint.decode import decode
    decoded, matches = decode(TEMPLATE)
    assert not matches
    return decoded


@pytest.mark.slow
def test_scale_out_template_passes_cfn_lint():
    out = subprocess.run([_tool("cfn-lint"), TEMPLATE], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _ingress_rules(resources, group):
    """(from, to, source) of every ingress rule into ``group``: inline and separate resources."""
    rules = []
    for rule in resources[group]["Properties"].get("SecurityGroupIngress", []):
        if "Fn::If" in rule:
            rule = rule["Fn::If"][1]
        rules.append((rule["FromPort"], rule["ToPort"], rule.get("CidrIp") or rule.get("SourceSecurityGroupId")))
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::EC2::SecurityGroupIngress" and props["GroupId"] == {"Ref": group}:
            rules.append((props["FromPort"], props["ToPort"], props.get("SourceSecurityGroupId")))
    return rules


@pytest.mark.unit
def test_security_groups_open_the_listener_and_the_task_ports_only(template):
    resources = template["Resources"]
    groups = [name for name, r in resources.items() if r["Type"] == "AWS::EC2::SecurityGroup"]
    assert sorted(groups) == ["InstanceSecurityGroup", "LoadBalancerSecurityGroup", "TaskSecurityGroup"]
    clients = {"Ref": "ClientCidr"}
    lb_rules = resources["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert _ingress_rules(resources, "LoadBalancerSecurityGroup") == [(80, 80, clients), (443, 443, clients)]
    assert lb_rules[1]["Fn::If"][0] == "HasCertificate" and lb_rules[1]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    egress = resources["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(r["FromPort"], r["ToPort"], r["DestinationSecurityGroupId"]) for r in egress] == [
        (8080, 8080, {"Ref": "TaskSecurityGroup"}), (8082, 8082, {"Ref": "TaskSecurityGroup"})]
    from_lb = {"Ref": "LoadBalancerSecurityGroup"}
    assert sorted(_ingress_rules(resources, "TaskSecurityGroup"), key=str) == [(8080, 8080, from_lb),
                                                                               (8082, 8082, from_lb)]
    assert _ingress_rules(resources, "InstanceSecurityGroup") == []
    # the management port: no rule anywhere, no port mapping
    for resource in resources.values():
        props = resource.get("Properties", {})
        for rule in props.get("SecurityGroupIngress", []) + props.get("SecurityGroupEgress", []) + [props]:
            rule = rule.get("Fn::If", [None, rule])[1]
            if "FromPort" in rule:
                assert not rule["FromPort"] <= ecs.MANAGEMENT_PORT <= rule["ToPort"], rule


@pytest.mark.unit
def test_load_balancer_listeners_and_target_group(template):
    resources = template["Resources"]
    assert template["Parameters"]["LoadBalancerScheme"]["AllowedValues"] == list(ecs_scaling.SCHEMES)
    lb = resources["LoadBalancer"]["Properties"]
    assert lb["Type"] == "application" and lb["Scheme"] == {"Ref": "LoadBalancerScheme"}
    http = resources["HttpListener"]["Properties"]
    assert (http["Protocol"], http["Port"]) == ("HTTP", 80)
    condition, with_cert, without = http["DefaultActions"]["Fn::If"]
    assert condition == "HasCertificate"
    assert with_cert == [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                                  "StatusCode": "HTTP_301"}}]
    assert without == [{"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}]
    https = resources["HttpsListener"]
    assert https["Condition"] == "HasCertificate"
    assert (https["Properties"]["Protocol"], https["Properties"]["Port"]) == ("HTTPS", 443)
    assert https["Properties"]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert template["Conditions"]["HasCertificate"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]}
    group = resources["TargetGroup"]["Properties"]
    # the same health check as the request builder's
    request = ecs_scaling.target_group("mmsctl", "vpc-1")
    for key in ("TargetType", "Protocol", "Port", "HealthCheckProtocol", "HealthCheckPort", "HealthCheckPath",
                "HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds", "HealthyThresholdCount",
                "UnhealthyThresholdCount", "Matcher"):
        assert group[key] == request[key], key
    assert (group["TargetType"], group["HealthCheckPath"], group["HealthCheckPort"]) == ("ip", "/readyz", "8082")
    attributes = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == {"Ref": "LongestRequestSeconds"}


@pytest.mark.unit
def test_stop_timeouts_cover_the_longest_request(template):
    mapping = template["Mappings"]["LongestRequest"]
    allowed = template["Parameters"]["LongestRequestSeconds"]["AllowedValues"]
    assert sorted(mapping, key=int) == [str(v) for v in allowed]
    for longest, entry in mapping.items():
        assert entry["StopTimeout"] == int(longest) + ecs.STOP_MARGIN <= ecs.MAX_STOP_TIMEOUT
        assert entry["IdleTimeout"] > int(longest)
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == {"Fn::FindInMap": ["LongestRequest", {"Ref": "LongestRequestSeconds"},
                                                          "StopTimeout"]}
    command = container["Command"]
    assert command[command.index("--drain-timeout") + 1] == {"Ref": "LongestRequestSeconds"}
    assert command[command.index("--metrics-port") + 1] == "8082"
    assert [m["ContainerPort"] for m in container["PortMappings"]] == [8080, 8082]
    # the generator's awsvpc task: the same ports and stop timeout for the same drain bound
    task = ecs.task_definition(ecs.TaskOptions(profile="cpu-latency", image=IMAGE, models=MODELS, cpu=2048,
                                               network_mode="awsvpc", metrics_port=8082, drain_timeout=30))
    (generated,) = task["containerDefinitions"]
    assert [m["containerPort"] for m in generated["portMappings"]] == [8080, 8082]
    assert generated["stopTimeout"] == mapping["30"]["StopTimeout"]
    assert generated["command"][generated["command"].index("--drain-timeout") + 1] == "30"


def _resolve(value, parameters):
    if isinstance(value, dict) and "Ref" in value:
        return str(parameters[value["Ref"]].get("Default", "30"))
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, parameter in parameters.items():
            text = text.replace("${%s}" % name, str(parameter.get("Default", "")))
        return text
    return value


@pytest.mark.unit
def test_template_command_is_what_mmsctl_serve_accepts(template):
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    words = [_resolve(w, template["Parameters"]) for w in container["EntryPoint"][1:] + container["Command"]]
    args = cli.build_parser().parse_args(words)  # every word known: --metrics-port is serve's own option now
    assert args.metrics_port == 8082
    assert args.func is cli.serve.cmd_serve and args.foreground and args.public and args.drain_timeout == 30
    assert args.inference_port == 8080 and args.management_port == 8081


@pytest.mark.unit
def test_service_deploys_rolling_with_the_circuit_breaker_on_the_capacity_provider(template):
    resources = template["Resources"]
    service = resources["Service"]["Properties"]
    assert "LaunchType" not in service and "DesiredCount" not in service
    assert service["DeploymentConfiguration"] == {"MinimumHealthyPercent": 100, "MaximumPercent": 200,
                                                  "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}
    assert service["LoadBalancers"] == [{"ContainerName": "mmsctl", "ContainerPort": 8080,
                                         "TargetGroupArn": {"Ref": "TargetGroup"}}]
    assert service["HealthCheckGracePeriodSeconds"] == {"Ref": "HealthCheckGracePeriod"}
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [{"Ref": "TaskSecurityGroup"}]
    assert service["CapacityProviderStrategy"][0]["CapacityProvider"] == {"Ref": "CapacityProvider"}
    assert resources["TaskDefinition"]["Properties"]["NetworkMode"] == "awsvpc"
    group = resources["AutoScalingGroup"]["Properties"]
    assert group["NewInstancesProtectedFromScaleIn"] is True and "DesiredCapacity" not in group
    provider = resources["CapacityProvider"]["Properties"]["AutoScalingGroupProvider"]
    assert provider["AutoScalingGroupArn"] == {"Ref": "AutoScalingGroup"}
    assert provider["ManagedScaling"]["Status"] == "ENABLED" and provider["ManagedTerminationProtection"] == "ENABLED"
    association = resources["ClusterCapacityProviders"]["Properties"]
    assert association["Cluster"] == {"Ref": "Cluster"} and association["CapacityProviders"] == [
        {"Ref": "CapacityProvider"}]


@pytest.mark.unit
def test_autoscaling_policies_track_requests_per_target_and_cpu(template):
    resources = template["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert target["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${Service.Name}"}
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinTasks"}, {"Ref": "MaxTasks"})
    policies = {name: r["Properties"] for name, r in resources.items()
                if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"}
    metrics = {name: p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
               for name, p in policies.items()}
    assert {m["PredefinedMetricType"] for m in metrics.values()} == {"ALBRequestCountPerTarget",
                                                                     "ECSServiceAverageCPUUtilization"}
    assert metrics["RequestCountScaling"]["ResourceLabel"] == {"Fn::Join": ["/", [
        {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]},
        {"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]}]]}
    assert policies["RequestCountScaling"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == {
        "Ref": "RequestsPerTargetPerMinute"}
    for policy in policies.values():
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        assert policy["PolicyType"] == "TargetTrackingScaling"
        assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
        assert (config["ScaleOutCooldown"], config["ScaleInCooldown"]) == ({"Ref": "ScaleOutCooldown"},
                                                                         {"Ref": "ScaleInCooldown"})
    parameters = template["Parameters"]
    assert parameters["ScaleInCooldown"]["Default"] > parameters["ScaleOutCooldown"]["Default"]
    assert (parameters["ScaleOutCooldown"]["Default"], parameters["ScaleInCooldown"]["Default"]) == (
        ecs_scaling.SCALE_OUT_COOLDOWN, ecs_scaling.SCALE_IN_COOLDOWN)
    assert "Default" not in parameters["RequestsPerTargetPerMinute"]  # sized from a bench report, never guessed


# -- requests against botocore's models ------------------------------------------------------------
def requests_by_operation():
    task = ecs.task_definition(ecs.TaskOptions(profile="cpu-latency", image=IMAGE, models=MODELS, cpu=2048,
                                               network_mode="awsvpc", metrics_port=8082, drain_timeout=30,
                                               execution_role_arn=ROLE % "ecsTaskExecutionRole"))
    service = ecs_scaling.with_capacity_provider(
        ecs.service(task, "mmsctl", "web", 2, subnets=["subnet-1", "subnet-2"], security_groups=["sg-1"],
                    target_group_arn=TG_ARN), "mmsctl-asg")
    return [
        ("elbv2", "CreateTargetGroup", ecs_scaling.target_group("mmsctl", "vpc-1")),
        ("elbv2", "ModifyTargetGroupAttributes", ecs_scaling.target_group_attributes(TG_ARN, 45)),
        ("elbv2", "CreateLoadBalancer", ecs_scaling.load_balancer("mmsctl", ["subnet-1", "subnet-2"], ["sg-1"],
                                                                  "internal")),
        ("elbv2", "CreateListener", ecs_scaling.listeners(LB_ARN, TG_ARN)[0]),
        ("elbv2", "CreateListener", ecs_scaling.listeners(LB_ARN, TG_ARN, CERT)[0]),
        ("elbv2", "CreateListener", ecs_scaling.listeners(LB_ARN, TG_ARN, CERT)[1]),
        ("application-autoscaling", "RegisterScalableTarget", ecs_scaling.scalable_target("mmsctl", "web", 2, 10)),
        ("application-autoscaling", "PutScalingPolicy", ecs_scaling.request_count_policy("mmsctl", "web", LABEL, 500)),
        ("application-autoscaling", "PutScalingPolicy", ecs_scaling.cpu_policy("mmsctl", "web", 80)),
        ("ecs", "RegisterTaskDefinition", task),
        ("ecs", "CreateService", service),
        ("ecs", "CreateCapacityProvider", ecs_scaling.capacity_provider(
            "mmsctl-asg", "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0000:autoScalingGroupName/x")),
    ]


@pytest.mark.unit
@pytest.mark.parametrize("index", range(12))
def test_requests_fit_botocores_models(index):
    service_name, operation, request = requests_by_operation()[index]
    shape = botocore.session.get_session().get_service_model(service_name).operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert enum_errors(request, shape) == []


@pytest.mark.unit
def test_resource_label_is_built_from_the_two_arns():
    assert ecs_scaling.resource_label(LB_ARN, TG_ARN) == LABEL
    with pytest.raises(ecs.EcsError, match="not an Application Load Balancer ARN"):
        ecs_scaling.resource_label(LB_ARN.replace("app/", "net/"), TG_ARN)
    with pytest.raises(ecs.EcsError, match="not a target group ARN"):
        ecs_scaling.resource_label(LB_ARN, LB_ARN)


@pytest.mark.unit
@pytest.mark.parametrize("call, message", [
    (lambda: ecs_scaling.target_group("mmsctl", "vpc-1", health_path=""), "needs a health check path"),
    (lambda: ecs_scaling.target_group("mmsctl", "vpc-1", health_path="/ping"), "answers 200 while every worker"),
    (lambda: ecs_scaling.target_group("mmsctl", "vpc-1", health_port=8081), "management API"),
    (lambda: ecs_scaling.target_group("-bad", "vpc-1"), "target group name"),
    (lambda: ecs_scaling.request_count_policy("c", "s", LABEL, 0), "must be a positive number"),
    (lambda: ecs_scaling.request_count_policy("c", "s", LABEL, float("nan")), "must be a positive number"),
    (lambda: ecs_scaling.request_count_policy("c", "s", "targetgroup/x/0a", 100), "resource label"),
    (lambda: ecs_scaling.cpu_policy("c", "s", 80, scale_out_cooldown=300, scale_in_cooldown=60), "scale in slower"),
    (lambda: ecs_scaling.scalable_target("c", "s", 5, 2), "min <= max"),
    (lambda: ecs_scaling.load_balancer("mmsctl", ["subnet-1"], ["sg-1"]), "two Availability Zones"),
    (lambda: ecs_scaling.load_balancer("mmsctl", ["a", "b"], ["sg-1"], "public"), "--scheme"),
    (lambda: ecs.task_definition(ecs.TaskOptions(profile="cpu-latency", image=IMAGE, models=MODELS, vcpus=2,
                                                 drain_timeout=115)), "--drain-timeout 115"),
])
def test_bad_values_are_refused_before_any_aws_call(call, message):
    with pytest.raises(ecs.EcsError, match=message):
        call()


# -- moto --------------------------------------------------------------------------------------------
@pytest.fixture
def aws(aws_credentials):
    import boto3
    from moto import mock_aws
    with mock_aws():
        yield {name: boto3.client(name, region_name="us-east-1")
               for name in ("ec2", "elbv2", "ecs", "application-autoscaling", "acm")}


def test_load_balancer_service_and_autoscaling_flow_in_moto(aws):
    ec2, elbv2 = aws["ec2"], aws["elbv2"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.%d.0/24" % i, AvailabilityZone="us-east-1%s" % zone)[
        "Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    lb_group = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
    task_group = ec2.create_security_group(GroupName="task", Description="task", VpcId=vpc)["GroupId"]
    lb = elbv2.create_load_balancer(**ecs_scaling.load_balancer("mmsctl", subnets, [lb_group]))["LoadBalancers"][0]
    group = elbv2.create_target_group(**ecs_scaling.target_group("mmsctl", vpc))["TargetGroups"][0]
    elbv2.modify_target_group_attributes(**ecs_scaling.target_group_attributes(group["TargetGroupArn"], 45))
    cert = aws["acm"].request_certificate(DomainName="mmsctl.example.com")["CertificateArn"]
    for request in ecs_scaling.listeners(lb["LoadBalancerArn"], group["TargetGroupArn"], cert):
        elbv2.create_listener(**request)
    described = elbv2.describe_target_groups(Names=["mmsctl"])["TargetGroups"][0]
    assert (described["TargetType"], described["HealthCheckPath"], described["HealthCheckPort"]) == (
        "ip", "/readyz", "8082")
    attributes = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "45"
    ports = sorted((l["Port"], l["Protocol"]) for l in elbv2.describe_listeners(
        LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"])
    assert ports == [(80, "HTTP"), (443, "HTTPS")]

    client = aws["ecs"]
    client.create_cluster(clusterName="mmsctl")
    task = ecs.task_definition(ecs.TaskOptions(profile="cpu-latency", image=IMAGE, models=MODELS, cpu=2048,
                                               network_mode="awsvpc", metrics_port=8082, drain_timeout=45))
    client.register_task_definition(**task)
    request = ecs.service(task, "mmsctl", "web", 2, subnets=subnets, security_groups=[task_group],
                          target_group_arn=group["TargetGroupArn"])
    created = client.create_service(**request)["service"]
    assert created["loadBalancers"] == request["loadBalancers"]
    assert created["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == [task_group]
    assert created["desiredCount"] == 2 and request["healthCheckGracePeriodSeconds"] == ecs.HEALTH_CHECK["startPeriod"]

    scaling = aws["application-autoscaling"]
    scaling.register_scalable_target(**ecs_scaling.scalable_target("mmsctl", "web", 2, 10))
    label = ecs_scaling.resource_label(lb["LoadBalancerArn"], group["TargetGroupArn"])
    for policy in (ecs_scaling.request_count_policy("mmsctl", "web", label, 756),
                   ecs_scaling.cpu_policy("mmsctl", "web", 80)):
        scaling.put_scaling_policy(**policy)
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == ("service/mmsctl/web", 2, 10)
    policies = {p["PolicyName"]: p["TargetTrackingScalingPolicyConfiguration"]
                for p in scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]}
    assert policies["web-requests-per-target"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": label}
    assert policies["web-requests-per-target"]["TargetValue"] == 756.0
    assert policies["web-cpu-backstop"]["PredefinedMetricSpecification"]["PredefinedMetricType"] == \
        "ECSServiceAverageCPUUtilization"
    assert label.startswith(lb["LoadBalancerArn"].split(":loadbalancer/")[1] + "/targetgroup/mmsctl/")


# -- mmsctl ecs autoscaling on real bench reports ------------------------------------------------------
def write_report(folder, levels, profile="cpu-latency", vcpus=2, batch_size=1, kind="server", extra_rows=(),
                 model="efficientnet-lite0"):
    """A report.json written by the bench code's own writer: ``levels`` are
    (concurrency, requests/s, latency ms of every request, errors) over 10 s."""
    body = folder / "input.bin"
    body.write_bytes(b"cat")
    load = bench.LoadConfig(concurrency=tuple(level[0] for level in levels), duration=10.0)
    price = bench.Price(0.085, "c5.large", "test")
    report = bench.new_report("Benchmark of %s" % model, model, bench.describe_input(str(body), b"cat"), load, price,
                              target=bench.report_target("http://127.0.0.1:8080", None, profile, vcpus))
    for concurrency, rps, latency, errors in list(levels) + list(extra_rows):
        samples = [(latency, 200)] * int(rps * 10) + [(latency, "ConnectionResetError")] * errors
        report["rows"].append(bench.make_row(
            kind, bench.summarize(samples, 10.0, price.usd_per_hour), concurrency, config=profile or "server",
            profile=profile,
            optimized_for=bench.optimized_for(profile), batch_size=batch_size, instance=price.label))
    return bench.write_reports(bench.finish_report(report), str(folder))["json"]


LEVELS = [(1, 10.0, 100.0, 0), (2, 18.0, 150.0, 0), (4, 20.0, 400.0, 0)]


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("bench"), LEVELS)


def run_cli(capsys, *words):
    code = cli.main(["ecs", "autoscaling"] + list(words))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.unit
def test_target_is_headroom_times_the_best_rate_meeting_the_p99_limit(report_path, capsys):
    size = autoscaling.sizing(autoscaling.load_report(report_path), "cpu-latency", 2, latency_p99_ms=250)
    assert (size["concurrency"], size["rps"], size["requests_per_target_per_minute"]) == (2, 18.0, 756)  # .7*18*60
    unlimited = autoscaling.sizing(autoscaling.load_report(report_path), "cpu-latency", 2, headroom=0.5)
    assert (unlimited["concurrency"], unlimited["requests_per_target_per_minute"]) == (4, 600)  # .5*20*60
    assert unlimited["cpu_target_percent"] == 60
    code, out, err = run_cli(capsys, "--bench-report", report_path, "--profile", "cpu-latency", "--cpu", "2048",
                             "--latency-p99-ms", "250")
    assert code == 0, err
    assert "target = 0.70 x 18.00 req/s x 60 = 756 requests per target per minute" in out
    assert "--parameter-overrides RequestsPerTargetPerMinute=756 CpuTargetPercent=80 Profile=cpu-latency" in out


@pytest.mark.unit
def test_printed_parameters_are_the_templates_and_policies_fit_the_model(report_path, template, capsys):
    code, out, _ = run_cli(capsys, "--bench-report", report_path, "--profile", "cpu-latency", "--vcpus", "2",
                           "--print", "parameters")
    parameters = json.loads(out)
    assert code == 0 and {p["ParameterKey"] for p in parameters} <= set(template["Parameters"])
    assert {"RequestsPerTargetPerMinute": "840"}.items() <= {p["ParameterKey"]: p["ParameterValue"]
                                                             for p in parameters}.items()
    model = botocore.session.get_session().get_service_model("application-autoscaling")
    shape = model.operation_model("PutScalingPolicy").input_shape
    for kind, metric in (("request-count-policy", "ALBRequestCountPerTarget"),
                         ("cpu-policy", "ECSServiceAverageCPUUtilization")):
        code, out, _ = run_cli(capsys, "--bench-report", report_path, "--profile", "cpu-latency", "--cpu", "2048",
                               "--print", kind, "--cluster", "mmsctl", "--service", "web", "--load-balancer-arn",
                               LB_ARN, "--target-group-arn", TG_ARN)
        policy = json.loads(out)
        assert code == 0 and not ParamValidator().validate(policy, shape).has_errors()
        spec = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
        assert spec["PredefinedMetricType"] == metric
    assert spec.get("ResourceLabel") is None
    code, out, _ = run_cli(capsys, "--bench-report", report_path, "--profile", "cpu-latency", "--cpu", "2048",
                           "--print", "request-count-policy", "--cluster", "c", "--service", "s",
                           "--resource-label", LABEL)
    assert json.loads(out)["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 840.0


@pytest.mark.unit
def test_a_report_of_several_profiles_uses_the_tasks_rows(tmp_path):
    path = write_report(tmp_path, LEVELS, extra_rows=[(8, 50.0, 90.0, 0)], profile="cpu-latency")
    report = autoscaling.load_report(path)
    report["rows"][-1]["profile"] = "cpu-throughput"  # as a sweep over both profiles writes them
    assert autoscaling.sizing(report, "cpu-latency", 2)["rps"] == 20.0
    assert autoscaling.sizing(report, "cpu-throughput", 2)["rps"] == 50.0


@pytest.mark.unit
def test_levels_with_errors_do_not_count(tmp_path):
    path = write_report(tmp_path, [(1, 10.0, 100.0, 0), (2, 30.0, 120.0, 3)])
    assert autoscaling.sizing(autoscaling.load_report(path), "cpu-latency", 2)["rps"] == 10.0


@pytest.fixture(scope="module")
def odd_reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("odd")
    paths = {}
    for name, options in {"four-vcpus": {"vcpus": 4}, "throughput": {"profile": "cpu-throughput"},
                          "no-profile": {"profile": None}, "in-process": {"kind": "in-process"},
                          "batches": {"extra_rows": [(1, 5.0, 100.0, 0)]}}.items():
        folder = base / name
        folder.mkdir()
        paths[name] = write_report(folder, LEVELS, **options)
    report = json.loads(open(paths["batches"]).read())
    report["rows"][-1]["batch_size"] = 4
    with open(paths["batches"], "w") as handle:
        json.dump(report, handle)
    (base / "other.json").write_text(json.dumps({"rows": []}))
    paths["other"] = str(base / "other.json")
    return paths


@pytest.mark.unit
@pytest.mark.parametrize("name, words, message", [
    ("four-vcpus", [], "was measured with 4 vCPUs, the task has 2: bench with the task's vCPUs"),
    ("throughput", [], "measured profile cpu-throughput, the task runs cpu-latency"),
    ("no-profile", [], "does not record the server's profile"),
    ("in-process", [], "has no server rows"),
    ("batches", [], "batch sizes 1, 4: pass --batch-size"),
    ("other", [], "is not a `mmsctl bench` report"),
    ("default", ["--latency-p99-ms", "50"], "meets p99 <= 50 ms (lowest p99: 100.0 ms at concurrency 1)"),
    ("default", ["--headroom", "1.5"], "--headroom 1.5"),
    ("default", ["--model", "resnet-152"], "measured model efficientnet-lite0, the task serves resnet-152"),
    ("missing", [], "cannot read bench report"),
])
def test_mismatched_reports_are_refused_in_one_line(name, words, message, odd_reports, report_path, capsys):
    path = {"default": report_path, "missing": report_path + ".missing"}.get(name) or odd_reports[name]
    code, out, err = run_cli(capsys, "--bench-report", path, "--profile", "cpu-latency", "--cpu", "2048", *words)
    assert code == 2 and out == ""
    assert err.startswith("mmsctl: error: ") and err.count("\n") == 1 and message in err, err


# -- the walkthrough (docs/ecs-scale-out.md; tests/test_docs.py parses every page's commands) ----------
def readme_section():
    with open(os.path.join(ROOT, "docs", "ecs-scale-out.md"), encoding="utf-8") as handle:
        return handle.read()


def shell_lines(section):
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.strip() for line in re.sub(r"\\\n\s*", " ", "\n".join(blocks)).splitlines() if line.strip()]


def words_of(command):
    return shlex.split(re.sub(r"\$\(?[A-Za-z_]+\)?", "X", command))


@pytest.mark.unit
def test_readme_walkthrough_commands_match_the_parser_and_the_template(template, report_path, capsys):
    section = readme_section()
    lines = shell_lines(section)
    embedded = re.findall(r"\$\((mmsctl ecs autoscaling[^)]*)\)", " ".join(lines))
    commands = [line for line in lines if line.startswith("mmsctl ")] + embedded
    assert any(c.startswith("mmsctl ecs autoscaling") for c in commands) and embedded
    parser = cli.build_parser()
    for command in commands:
        parser.parse_args(words_of(command)[1:])
    deploys = [line for line in lines if line.startswith("aws cloudformation deploy")]
    assert len(deploys) == 2 and all("--template-file docker/ecs/scale-out.yaml" in d for d in deploys)
    given = set(re.findall(r"\b([A-Z][A-Za-z]+)=", re.sub(r"\$\(mmsctl[^)]*\)", "", deploys[0])))
    code, printed, _ = run_cli(capsys, *words_of(embedded[0])[3:] + ["--bench-report", report_path])
    assert code == 0
    given |= {word.split("=")[0] for word in printed.split()}
    parameters = template["Parameters"]
    assert given <= set(parameters)
    assert {name for name, p in parameters.items() if "Default" not in p} <= given
    # the sample output on the page has the shape the command prints
    sample = re.search(r"```\n(efficientnet-lite0 on .*?)```", section, re.S).group(1).strip().splitlines()
    code, out, _ = run_cli(capsys, "--bench-report", report_path, "--profile", "cpu-latency", "--cpu", "2048",
                           "--latency-p99-ms", "250")
    shape = [re.sub(r"\d+(\.\d+)?", "N", line) for line in out.strip().splitlines()]
    assert [re.sub(r"\d+(\.\d+)?", "N", line) for line in sample] == shape


@pytest.mark.unit
def test_cluster_template_stop_timeout_leaves_room_for_the_default_drain():
    from cfnlint.decode import decode
    cluster, _ = decode(os.path.join(ROOT, "docker", "ecs", "cluster.yaml"))
    (container,) = cluster["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    args = cli.build_parser().parse_args(container["EntryPoint"][1:] + [
        _resolve(w, cluster["Parameters"]) for w in container["Command"]])
    assert args.drain_timeout == ecs.DRAIN_TIMEOUT
    assert container["StopTimeout"] == ecs.STOP_TIMEOUT == args.drain_timeout + ecs.STOP_MARGIN
