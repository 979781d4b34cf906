"""Scale-out requests as plain dicts: the load balancer (ELBv2), the service's
autoscaling (Application Auto Scaling) and the capacity provider strategy (ECS).

What docker/ecs/scale-out.yaml makes as a stack, one API request at a time, for
accounts that do not deploy with CloudFormation and for tests: every request is
checked against botocore's service models and run through moto in
tests/test_ecs_scale_out.py. Nothing here talks to AWS; every value AWS would
refuse, or that would make a broken deployment (a health check on MMS's /ping,
a target value of 0), is refused here with the reason.
"""
import math
import re

from .taskdef import INFERENCE_PORT, MANAGEMENT_PORT, EcsError

#: ``mmsctl serve --metrics-port``: /healthz (alive) and /readyz (503 while a model is
#: not loaded or while draining after SIGTERM)
HEALTH_PORT = 8082
HEALTH_PATH = "/readyz"
#: answers 200 while every worker is dead: never a load balancer's health check
MMS_PING = "/ping"
SCALE_OUT_COOLDOWN = 60
SCALE_IN_COOLDOWN = 300
DEFAULT_LONGEST_REQUEST = 30
MAX_DEREGISTRATION_DELAY = 3600
SCHEMES = ("internet-facing", "internal")
#: TLS 1.3 and 1.2 only
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
_ELB_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
_LB_ARN = re.compile(r"^arn:[\w-]+:elasticloadbalancing:[\w-]+:\d{12}:loadbalancer/(app/[^/]+/[0-9a-f]+)$")
_TG_ARN = re.compile(r"^arn:[\w-]+:elasticloadbalancing:[\w-]+:\d{12}:(targetgroup/[^/]+/[0-9a-f]+)$")


def _name(name, what):
    if not _ELB_NAME.match(name or "") or name.startswith("internal-"):
        raise EcsError("%s name %r: 1 to 32 letters, digits and '-', not starting or ending with '-'" % (what, name))
    return name


def target_group(name, vpc_id, health_path=HEALTH_PATH, health_port=HEALTH_PORT, port=INFERENCE_PORT):
    """CreateTargetGroup: awsvpc tasks registered by IP, health-checked on mmsctl's readiness."""
    if not health_path:
        raise EcsError("the target group needs a health check path: %s on port %d (mmsctl serve --metrics-port %d)"
                       % (HEALTH_PATH, HEALTH_PORT, HEALTH_PORT))
    if not health_path.startswith("/"):
        raise EcsError("health check path %r must start with '/' (e.g. %s)" % (health_path, HEALTH_PATH))
    if health_path.split("?")[0].rstrip("/") == MMS_PING:
        raise EcsError("health check on MMS's %s: it answers 200 while every worker is dead; check %s on port %d"
                       % (MMS_PING, HEALTH_PATH, HEALTH_PORT))
    if health_port == MANAGEMENT_PORT:
        raise EcsError("health check port %d is the management API, reachable from nowhere; use %d"
                       % (MANAGEMENT_PORT, HEALTH_PORT))
    if not vpc_id:
        raise EcsError("--vpc-id is required for a target group")
    return {
        "Name": _name(name, "target group"), "Protocol": "HTTP", "Port": port, "VpcId": vpc_id, "TargetType": "ip",
        "HealthCheckProtocol": "HTTP", "HealthCheckPort": str(health_port), "HealthCheckPath": health_path,
        "HealthCheckEnabled": True, "HealthCheckIntervalSeconds": 10, "HealthCheckTimeoutSeconds": 5,
        "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 2, "Matcher": {"HttpCode": "200"},
    }


def target_group_attributes(target_group_arn, longest_request=DEFAULT_LONGEST_REQUEST):
    """ModifyTargetGroupAttributes: a deregistering task keeps its requests for the longest one."""
    if not 0 <= longest_request <= MAX_DEREGISTRATION_DELAY:
        raise EcsError("longest request %r s: the deregistration delay is 0 to %d s"
                       % (longest_request, MAX_DEREGISTRATION_DELAY))
    return {"TargetGroupArn": target_group_arn, "Attributes": [
        {"Key": "deregistration_delay.timeout_seconds", "Value": str(int(math.ceil(longest_request)))},
        {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"}]}


def load_balancer(name, subnets, security_groups, scheme="internet-facing"):
    """CreateLoadBalancer: an Application Load Balancer."""
    if scheme not in SCHEMES:
        raise EcsError("--scheme must be one of %s" % ", ".join(SCHEMES))
    if len(subnets) < 2:
        raise EcsError("an Application Load Balancer needs subnets in at least two Availability Zones")
    return {"Name": _name(name, "load balancer"), "Subnets": list(subnets), "SecurityGroups": list(security_groups),
            "Scheme": scheme, "Type": "application", "IpAddressType": "ipv4"}


def listeners(load_balancer_arn, target_group_arn, certificate_arn=None):
    """CreateListener requests: HTTP on 80 forwarding to the tasks; with a certificate,
    HTTPS on 443 forwarding and HTTP redirecting to it."""
    forward = [{"Type": "forward", "TargetGroupArn": target_group_arn}]
    if not certificate_arn:
        return [{"LoadBalancerArn": load_balancer_arn, "Protocol": "HTTP", "Port": 80, "DefaultActions": forward}]
    redirect = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                        "StatusCode": "HTTP_301"}}]
    return [{"LoadBalancerArn": load_balancer_arn, "Protocol": "HTTP", "Port": 80, "DefaultActions": redirect},
            {"LoadBalancerArn": load_balancer_arn, "Protocol": "HTTPS", "Port": 443, "SslPolicy": SSL_POLICY,
             "Certificates": [{"CertificateArn": certificate_arn}], "DefaultActions": forward}]


def resource_label(load_balancer_arn, target_group_arn):
    """ALBRequestCountPerTarget's ResourceLabel: ``app/NAME/ID/targetgroup/NAME/ID``."""
    lb, tg = _LB_ARN.match(load_balancer_arn or ""), _TG_ARN.match(target_group_arn or "")
    if not lb:
        raise EcsError("%r is not an Application Load Balancer ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:"
                       "loadbalancer/app/NAME/ID)" % load_balancer_arn)
    if not tg:
        raise EcsError("%r is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"
                       % target_group_arn)
    return "%s/%s" % (lb.group(1), tg.group(1))


def service_resource_id(cluster, service):
    if not cluster or not service:
        raise EcsError("--cluster and --service name the ECS service to scale")
    return "service/%s/%s" % (cluster, service)


def scalable_target(cluster, service, min_tasks, max_tasks):
    """RegisterScalableTarget: the service's desired count between ``min_tasks`` and ``max_tasks``."""
    if not 0 <= min_tasks <= max_tasks:
        raise EcsError("--min-tasks %d and --max-tasks %d: need 0 <= min <= max" % (min_tasks, max_tasks))
    return {"ServiceNamespace": "ecs", "ResourceId": service_resource_id(cluster, service),
            "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": min_tasks, "MaxCapacity": max_tasks}


def _policy(cluster, service, name, target_value, metric, scale_out_cooldown, scale_in_cooldown):
    if not isinstance(target_value, (int, float)) or not math.isfinite(target_value) or target_value <= 0:
        raise EcsError("target value %r for %s: must be a positive number"
                       % (target_value, metric["PredefinedMetricType"]))
    if scale_in_cooldown < scale_out_cooldown:
        raise EcsError("scale-in cooldown %d s is shorter than scale-out cooldown %d s: scale in slower than out"
                       % (scale_in_cooldown, scale_out_cooldown))
    return {"PolicyName": name, "ServiceNamespace": "ecs", "ResourceId": service_resource_id(cluster, service),
            "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(target_value), "PredefinedMetricSpecification": metric,
                "ScaleOutCooldown": scale_out_cooldown, "ScaleInCooldown": scale_in_cooldown,
                "DisableScaleIn": False}}


def request_count_policy(cluster, service, label, target_per_minute, scale_out_cooldown=SCALE_OUT_COOLDOWN,
                         scale_in_cooldown=SCALE_IN_COOLDOWN):
    """PutScalingPolicy: keep ALBRequestCountPerTarget (requests per task per minute) at the target."""
    if not re.match(r"^app/[^/]+/[0-9a-f]+/targetgroup/[^/]+/[0-9a-f]+$", label or ""):
        raise EcsError("resource label %r: expected app/LB-NAME/LB-ID/targetgroup/TG-NAME/TG-ID (the ends of the load "
                       "balancer's and target group's ARNs)" % label)
    metric = {"PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": label}
    return _policy(cluster, service, "%s-requests-per-target" % service, target_per_minute, metric,
                   scale_out_cooldown, scale_in_cooldown)


def cpu_policy(cluster, service, cpu_percent, scale_out_cooldown=SCALE_OUT_COOLDOWN,
               scale_in_cooldown=SCALE_IN_COOLDOWN):
    """PutScalingPolicy: the CPU backstop (requests heavier than the benchmark's)."""
    if not 0 < cpu_percent <= 100:
        raise EcsError("CPU target %r%%: must be in 1-100" % cpu_percent)
    return _policy(cluster, service, "%s-cpu-backstop" % service, cpu_percent,
                   {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, scale_out_cooldown, scale_in_cooldown)


def with_capacity_provider(service_request, capacity_provider):
    """A CreateService request (mmsctl.docker.ecs.service) placed by a capacity provider
    instead of the EC2 launch type, so the instances follow the tasks."""
    request = {key: value for key, value in service_request.items() if key != "launchType"}
    request["capacityProviderStrategy"] = [{"capacityProvider": capacity_provider, "weight": 1, "base": 0}]
    return request


def capacity_provider(name, auto_scaling_group_arn, target_capacity=100):
    """CreateCapacityProvider: managed scaling of the Auto Scaling group and managed
    termination protection (the group must protect new instances from scale-in)."""
    if not 1 <= target_capacity <= 100:
        raise EcsError("target capacity %r%%: 1 to 100" % target_capacity)
    return {"name": name, "autoScalingGroupProvider": {
        "autoScalingGroupArn": auto_scaling_group_arn,
        "managedScaling": {"status": "ENABLED", "targetCapacity": target_capacity, "minimumScalingStepSize": 1,
                           "maximumScalingStepSize": 4, "instanceWarmupPeriod": 180},
        "managedTerminationProtection": "ENABLED"}}
