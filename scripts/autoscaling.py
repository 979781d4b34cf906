"""``mmsctl ecs autoscaling``: the service's scaling target from a ``mmsctl bench`` report.

ALBRequestCountPerTarget counts requests per task per minute, so

    target = headroom x (highest measured requests/s whose p99 meets the limit) x 60

read from the report's server rows of the task's profile. The report must have
been measured on the task's vCPUs with the task's profile (the figures of a
4-vCPU cpu-throughput server say nothing about a 2-vCPU cpu-latency task): any
mismatch is refused in one line. The CPU backstop's target sits above the load
the request-count policy keeps (headroom x 100 % + 10, at most 90): target
tracking scales out when either policy asks and in only when both allow, so
the backstop acts only when requests are heavier than the benchmark's.
"""
import argparse
import json
import math

from mmsctl.config.profiles import PROFILES
from mmsctl.docker import ecs
from mmsctl.docker.ecs import scaling as ecs_scaling

from .bench import REPORT_FORMAT
from .errors import UsageError
from .files import read_regular

DEFAULT_HEADROOM = 0.7
CPU_BACKSTOP_MARGIN = 10
MAX_CPU_TARGET = 90


class AutoscalingError(UsageError):
    """A bench report that cannot size this task; the message says why."""


def load_report(path):
    """A report.json written by ``mmsctl bench`` or ``mmsctl bench sweep``."""
    try:
        report = json.loads(read_regular(path).decode("utf-8"))
    except OSError as err:
        raise AutoscalingError("cannot read bench report %s: %s" % (path, err.strerror or err))
    except ValueError as err:
        raise AutoscalingError("bench report %s is not JSON (%s)" % (path, err))
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT \
            or not isinstance(report.get("rows"), list):
        raise AutoscalingError("%s is not a `mmsctl bench` report (format %s): pass DIR/report.json of `mmsctl bench "
                               "--out DIR`" % (path, REPORT_FORMAT))
    return report


def report_vcpus(report):
    """The vCPUs the benchmarked server's profile planned for (older reports: the machine's)."""
    return (report.get("target") or {}).get("vcpus") or (report.get("machine") or {}).get("vcpus")


def _p99(row):
    return (row.get("latency_ms") or {}).get("p99")


def sizing(report, profile, vcpus, latency_p99_ms=None, headroom=DEFAULT_HEADROOM, batch_size=None, model=None,
           path="the report"):
    """The target of the request-count policy and the row it comes from (refusing mismatches)."""
    if not 0 < headroom <= 1:
        raise AutoscalingError("--headroom %r: a fraction of the measured throughput, above 0 and at most 1" % headroom)
    if latency_p99_ms is not None and latency_p99_ms <= 0:
        raise AutoscalingError("--latency-p99-ms %r must be positive" % latency_p99_ms)
    if model and report.get("model") != model:
        raise AutoscalingError("%s measured model %s, the task serves %s" % (path, report.get("model"), model))
    servers = [row for row in report["rows"] if row.get("kind") == "server"]
    if not servers:
        raise AutoscalingError("%s has no server rows (an in-process run): bench the server, `mmsctl bench --url ... "
                               "--profile %s`" % (path, profile))
    measured = sorted({row.get("profile") for row in servers if row.get("profile")})
    if not measured:
        raise AutoscalingError("%s does not record the server's profile: rerun `mmsctl bench --url ... --profile %s`"
                               % (path, profile))
    if profile not in measured:
        raise AutoscalingError("%s measured profile %s, the task runs %s: bench the task's profile"
                               % (path, ", ".join(measured), profile))
    bench_vcpus = report_vcpus(report)
    if bench_vcpus != vcpus:
        raise AutoscalingError("%s was measured with %s vCPUs, the task has %d: bench with the task's vCPUs "
                               "(`mmsctl serve --vcpus %d`, `mmsctl bench --vcpus %d`)"
                               % (path, bench_vcpus, vcpus, vcpus, vcpus))
    rows = [row for row in servers if row.get("profile") == profile]
    batches = sorted({row.get("batch_size") or 1 for row in rows})
    if batch_size is None and len(batches) > 1:
        raise AutoscalingError("%s has %s rows with batch sizes %s: pass --batch-size (the task's)"
                               % (path, profile, ", ".join(map(str, batches))))
    wanted = batches[0] if batch_size is None else batch_size
    rows = [row for row in rows if (row.get("batch_size") or 1) == wanted]
    if not rows:
        raise AutoscalingError("%s has no %s rows with batch size %d (it has %s)"
                               % (path, profile, wanted, ", ".join(map(str, batches))))
    clean = [row for row in rows if row.get("rps") and _p99(row) is not None and not row.get("errors")]
    if not clean:
        raise AutoscalingError("%s: every %s level had errors or no successful answer" % (path, profile))
    meeting = [row for row in clean if latency_p99_ms is None or _p99(row) <= latency_p99_ms]
    if not meeting:
        best = min(clean, key=_p99)
        raise AutoscalingError("no %s level of %s meets p99 <= %g ms (lowest p99: %.1f ms at concurrency %d): raise "
                               "--latency-p99-ms, or give the task more vCPUs" % (profile, path, latency_p99_ms,
                                                                                   _p99(best), best["concurrency"]))
    row = max(meeting, key=lambda r: r["rps"])
    target = headroom * row["rps"] * 60.0
    return {
        "model": report.get("model"), "profile": profile, "vcpus": vcpus, "batch_size": wanted,
        "concurrency": row["concurrency"], "rps": row["rps"], "p99_ms": _p99(row), "latency_p99_ms": latency_p99_ms,
        "headroom": headroom, "levels": len(clean), "levels_meeting": len(meeting),
        # ALBRequestCountPerTarget is a whole count per minute; at least 1
        "requests_per_target_per_minute": max(1, int(math.floor(target))),
        "cpu_target_percent": min(MAX_CPU_TARGET, int(round(headroom * 100)) + CPU_BACKSTOP_MARGIN),
    }


def cloudformation_parameters(size, scale_out_cooldown=ecs_scaling.SCALE_OUT_COOLDOWN,
                              scale_in_cooldown=ecs_scaling.SCALE_IN_COOLDOWN):
    """The scale-out template's parameters this sizing sets (docker/ecs/scale-out.yaml)."""
    values = {"RequestsPerTargetPerMinute": size["requests_per_target_per_minute"],
              "CpuTargetPercent": size["cpu_target_percent"], "Profile": size["profile"], "Vcpus": size["vcpus"],
              "ScaleOutCooldown": scale_out_cooldown, "ScaleInCooldown": scale_in_cooldown}
    return [{"ParameterKey": key, "ParameterValue": str(value)} for key, value in values.items()]


def scaling_policies(size, cluster, service, label, scale_out_cooldown=ecs_scaling.SCALE_OUT_COOLDOWN,
                     scale_in_cooldown=ecs_scaling.SCALE_IN_COOLDOWN):
    """The two PutScalingPolicy requests (request count, CPU backstop) of the template, for the AWS CLI."""
    return [ecs_scaling.request_count_policy(cluster, service, label, size["requests_per_target_per_minute"],
                                             scale_out_cooldown, scale_in_cooldown),
            ecs_scaling.cpu_policy(cluster, service, size["cpu_target_percent"], scale_out_cooldown,
                                   scale_in_cooldown)]


def explain(size):
    """One line: how the target was computed."""
    limit = "p99 %.1f ms%s" % (size["p99_ms"], "" if size["latency_p99_ms"] is None
                               else " <= %g ms" % size["latency_p99_ms"])
    return ("%s on %d vCPU%s (%s, batch %d): best %.2f req/s at concurrency %d (%s, %d of %d levels qualify); "
            "target = %.2f x %.2f req/s x 60 = %d requests per target per minute; CPU backstop %d%%" % (
                size["model"], size["vcpus"], "" if size["vcpus"] == 1 else "s", size["profile"], size["batch_size"],
                size["rps"], size["concurrency"], limit, size["levels_meeting"], size["levels"], size["headroom"],
                size["rps"], size["requests_per_target_per_minute"], size["cpu_target_percent"]))


def overrides(parameters):
    """``Key=Value`` words for ``aws cloudformation deploy --parameter-overrides``."""
    return " ".join("%s=%s" % (p["ParameterKey"], p["ParameterValue"]) for p in parameters)


# -- the command ---------------------------------------------------------------------------------
PRINTS = ("summary", "overrides", "parameters", "request-count-policy", "cpu-policy")
EXAMPLE = """example:
  mmsctl ecs autoscaling --bench-report bench-out/report.json --profile cpu-latency --cpu 2048 \\
      --latency-p99-ms 250 --headroom 0.7
  mmsctl ecs autoscaling --bench-report bench-out/report.json --profile cpu-latency --cpu 2048 \\
      --print request-count-policy --cluster mmsctl --service web \\
      --resource-label app/mmsctl/0123456789abcdef/targetgroup/mmsctl/fedcba9876543210 > policy.json
  aws application-autoscaling put-scaling-policy --cli-input-json file://policy.json"""


def run(args):
    """``mmsctl ecs autoscaling``: print the sizing, the template's parameters or one policy request."""
    vcpus = ecs.planned_vcpus(ecs.TaskOptions(profile=args.profile, image="", models=(), cpu=args.cpu,
                                              vcpus=args.vcpus))
    size = sizing(load_report(args.bench_report), args.profile, vcpus, latency_p99_ms=args.latency_p99_ms,
                  headroom=args.headroom, batch_size=args.batch_size, model=args.model, path=args.bench_report)
    parameters = cloudformation_parameters(size, args.scale_out_cooldown, args.scale_in_cooldown)
    if args.print == "summary":
        print(explain(size))
        print("CloudFormation (docker/ecs/scale-out.yaml): --parameter-overrides " + overrides(parameters))
    elif args.print == "overrides":
        print(overrides(parameters))
    elif args.print == "parameters":
        print(json.dumps(parameters, indent=2))
    else:
        label = args.resource_label or ecs_scaling.resource_label(args.load_balancer_arn, args.target_group_arn)
        policies = scaling_policies(size, args.cluster, args.service, label, args.scale_out_cooldown,
                                    args.scale_in_cooldown)
        print(json.dumps(policies[0] if args.print == "request-count-policy" else policies[1], indent=2))
    return 0


def add_command(actions, _parser=None):
    """Add ``autoscaling`` to the ``mmsctl ecs`` subcommands."""
    cmd = actions.add_parser("autoscaling", epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
                             help="the service's scaling target (requests per task per minute) from a bench report")
    cmd.add_argument("--bench-report", required=True, metavar="DIR/report.json", help="report of `mmsctl bench`")
    cmd.add_argument("--profile", required=True, choices=PROFILES, help="the task's profile (the report's must match)")
    cmd.add_argument("--cpu", type=int, help="the task's CPU units (1024 = one vCPU)")
    cmd.add_argument("--vcpus", type=int, help="the task's vCPUs (default: --cpu / 1024); the report's must match")
    cmd.add_argument("--latency-p99-ms", type=float, help="only levels whose p99 is at most this count (default: all)")
    cmd.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                     help="fraction of the measured throughput to aim for (default %(default)s)")
    cmd.add_argument("--batch-size", type=int, help="the server's batch size, when the report has several")
    cmd.add_argument("--model", help="refuse a report of another model")
    cmd.add_argument("--print", default="summary", choices=PRINTS,
                     help="summary (default), overrides (for `aws cloudformation deploy --parameter-overrides`), "
                          "parameters (JSON for --parameters file://), or one PutScalingPolicy request")
    cmd.add_argument("--scale-out-cooldown", type=int, default=ecs_scaling.SCALE_OUT_COOLDOWN, help="seconds")
    cmd.add_argument("--scale-in-cooldown", type=int, default=ecs_scaling.SCALE_IN_COOLDOWN,
                     help="seconds (longer than scale-out: scale in slowly)")
    cmd.add_argument("--cluster", help="policies: the ECS cluster")
    cmd.add_argument("--service", help="policies: the ECS service")
    cmd.add_argument("--resource-label", help="policies: app/LB/ID/targetgroup/TG/ID (the stack's ResourceLabel "
                                              "output), or give --load-balancer-arn and --target-group-arn")
    cmd.add_argument("--load-balancer-arn", help="policies: the load balancer (for the resource label)")
    cmd.add_argument("--target-group-arn", help="policies: the target group (for the resource label)")
    cmd.set_defaults(func=run)
    return cmd
