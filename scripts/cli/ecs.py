"""``mmsctl ecs task-definition | neuron-task-definition | service | iam-policy | autoscaling``."""
import os

from mmsctl.config.profiles import OPENMP_RUNTIMES, PROFILES
from mmsctl.docker import ecs

from .. import autoscaling, models_file
from .common import command, model_pair, print_json


def _list(text):
    return [item for item in text.split(",") if item]


def add_role_options(parser):
    parser.add_argument("--execution-role-arn", help="role the ECS agent uses to pull the image and write logs "
                                                     "(e.g. arn:aws:iam::ACCOUNT:role/ecsTaskExecutionRole)")
    parser.add_argument("--task-role-arn", help="role of the containers; for EI it needs elastic-inference:Connect "
                                                "(mmsctl ecs iam-policy ei-connect)")


def cmd_task_definition(args):
    file_models = tuple(models_file.load(args.models_file)) if args.models_file else ()
    print_json(ecs.task_definition(ecs.TaskOptions(
        profile=args.profile, image=args.image, models=tuple(args.models or ()), family=args.family,
        models_file=os.path.basename(args.models_file) if args.models_file else None,
        file_models=file_models,
        accelerator=args.accelerator, ei_attachment=args.ei_attachment, network_mode=args.network_mode,
        side_by_side=args.side_by_side, cpu=args.cpu, memory=args.memory, vcpus=args.vcpus, gpus=args.gpus,
        openmp=args.openmp, host_port=args.host_port, execution_role_arn=args.execution_role_arn,
        task_role_arn=args.task_role_arn, host_model_store=args.host_model_store, log_group=args.log_group,
        region=args.region, metrics_port=args.metrics_port, drain_timeout=args.drain_timeout, emf=args.emf)))


def cmd_neuron(args):
    print_json(ecs.neuron_task_definition(ecs.NeuronOptions(
        image=args.image, models=tuple(args.models), vcpus=args.vcpus, devices=args.neuron_devices,
        neuron_rtd_image=args.neuron_rtd_image, family=args.family, memory=args.memory,
        execution_role_arn=args.execution_role_arn, task_role_arn=args.task_role_arn)))


def cmd_service(args):
    task = ecs.load_task_definition(args.task_definition_file)
    print_json(ecs.service(task, args.cluster, args.service_name or task["family"],
                            desired_count=args.desired_count, revision=args.revision, subnets=args.subnets,
                            security_groups=args.security_groups, target_group_arn=args.target_group_arn,
                            assign_public_ip=args.assign_public_ip))


def cmd_iam(args):
    print_json(ecs.iam_document(args.kind))


def add_commands(sub):
    """``mmsctl ecs task-definition | neuron-task-definition | service | iam-policy``: print ECS requests (JSON)."""
    group = command(sub, "ecs",
                    "print Amazon ECS requests (task definitions, services, IAM policies) as JSON",
                    "mmsctl ecs task-definition --profile cpu-latency --image mmsctl:cpu --cpu 2048 \\\n"
                    "    --models efficientnet-lite0=efficientnet-lite0.mar > taskdef.json\n"
                    "aws ecs register-task-definition --cli-input-json file://taskdef.json")
    actions = group.add_subparsers(dest="ecs_action", metavar="ACTION", required=True)

    task = command(actions, "task-definition",
                   "a RegisterTaskDefinition request for an mmsctl image",
                   "mmsctl ecs task-definition --profile ei --accelerator eia2.medium --side-by-side \\\n"
                   "    --image ACCOUNT.dkr.ecr.us-east-1.amazonaws.com/mmsctl:ei --cpu 2048 --memory 4096 \\\n"
                   "    --models resnet-152=resnet-152.mar --task-role-arn arn:aws:iam::ACCOUNT:role/ecs-ei-task-role")
    task.add_argument("--profile", required=True, choices=PROFILES, help="the server's deployment profile")
    task.add_argument("--image", required=True, help="image built from docker/Dockerfile.cpu|gpu|ei")
    task.add_argument("--models", nargs="+", type=model_pair, metavar="NAME=FILE.mar",
                      help="archives in the container's model store (/models) to load")
    task.add_argument("--models-file", metavar="FILE.toml",
                      help="a models file, read here (checked and planned) and read by the server as "
                           "/models/FILE.toml: put it next to the archives, baked into the image or in "
                           "--host-model-store")
    task.add_argument("--accelerator", help="Elastic Inference accelerator of the task (profile ei): %s"
                      % ", ".join(ecs.EI_ACCELERATORS))
    task.add_argument("--ei-attachment", default="task", choices=ecs.EI_ATTACHMENTS,
                      help="task: --accelerator on the task (default); instance: the EI of the container instance "
                           "(the server then runs without the ECS metadata variables)")
    task.add_argument("--network-mode", default="bridge", choices=ecs.NETWORK_MODES, help="default bridge")
    task.add_argument("--side-by-side", action="store_true",
                      help="add a plain cpu-latency server on port %d next to the accelerated one, to time both"
                           % (ecs.INFERENCE_PORT + ecs.SIDE_PORT_OFFSET))
    task.add_argument("--cpu", type=int, help="task CPU units (1024 = one vCPU), split between the servers")
    task.add_argument("--memory", type=int, default=ecs.DEFAULT_MEMORY_MIB, help="task memory in MiB (default 2048)")
    task.add_argument("--vcpus", type=int, help="vCPUs each server plans threads for (default: --cpu / 1024)")
    task.add_argument("--gpus", type=int, default=1, help="GPUs of the gpu profile's container (default 1)")
    task.add_argument("--openmp", default="gnu", choices=OPENMP_RUNTIMES,
                      help="OpenMP runtime of the image's MXNet (default gnu: the pip wheels)")
    task.add_argument("--host-port", type=int, default=ecs.INFERENCE_PORT,
                      help="bridge mode: instance port of the inference API (default 8080; 0 = dynamic)")
    task.add_argument("--family", help="task definition family (default mmsctl-PROFILE)")
    task.add_argument("--host-model-store", metavar="PATH",
                      help="folder on the container instance mounted read-only at /models (default: the "
                           "archives are in the image)")
    task.add_argument("--log-group", help="CloudWatch Logs group for the awslogs driver")
    task.add_argument("--region", help="region of --log-group (default us-east-1)")
    task.add_argument("--metrics-port", type=int, help="serve /healthz and /readyz on this port (awsvpc tasks behind "
                                                       "a load balancer: 8082)")
    task.add_argument("--emf", action="store_true",
                      help="the server writes CloudWatch Embedded Metric Format lines (per model per minute) for "
                           "the awslogs driver (needs --log-group)")
    task.add_argument("--drain-timeout", type=int, default=ecs.DRAIN_TIMEOUT,
                      help="seconds requests in flight get after SIGTERM (default %d; stopTimeout = this + %d)"
                           % (ecs.DRAIN_TIMEOUT, ecs.STOP_MARGIN))
    add_role_options(task)
    task.set_defaults(func=cmd_task_definition)

    neuron = command(actions, "neuron-task-definition",
                     "an Inf1 (AWS Inferentia) task definition: /dev/neuron* devices",
                     "mmsctl ecs neuron-task-definition --image ACCOUNT.dkr.ecr.us-east-1.amazonaws.com/mmsctl:inf1 \\\n"
                     "    --vcpus 4 --models resnet-50=resnet-50-neuron.mar")
    neuron.add_argument("--image", required=True, help="an mmsctl image with MXNet for Neuron")
    neuron.add_argument("--models", required=True, nargs="+", type=model_pair, metavar="NAME=FILE.mar")
    neuron.add_argument("--vcpus", type=int, required=True, help="vCPUs of the instance type (inf1.xlarge: 4)")
    neuron.add_argument("--neuron-devices", type=int, default=1, help="Inferentia chips to map (default 1)")
    neuron.add_argument("--neuron-rtd-image", help="Neuron 1.x: run this neuron-rtd sidecar and share its socket "
                                                   "(its layout); default: Neuron 2.x, devices in the server")
    neuron.add_argument("--family", default="mmsctl-inf1")
    neuron.add_argument("--memory", type=int, default=ecs.DEFAULT_MEMORY_MIB, help="task memory in MiB")
    add_role_options(neuron)
    neuron.set_defaults(func=cmd_neuron)

    service = command(actions, "service",
                      "a CreateService request that keeps N copies of a task running",
                      "mmsctl ecs service --task-definition-file taskdef.json --cluster mmsctl --desired-count 2 "
                      "> service.json\naws ecs create-service --cli-input-json file://service.json")
    service.add_argument("--task-definition-file", required=True, metavar="FILE",
                         help="the JSON `mmsctl ecs task-definition` printed")
    service.add_argument("--cluster", required=True)
    service.add_argument("--service-name", help="default: the task definition's family")
    service.add_argument("--desired-count", type=int, default=1, help="copies to keep running (default 1)")
    service.add_argument("--revision", type=int, help="task definition revision (default: the latest ACTIVE)")
    service.add_argument("--subnets", type=_list, default=[], help="awsvpc tasks: subnet ids, comma-separated")
    service.add_argument("--security-groups", type=_list, default=[], help="awsvpc tasks: security group ids")
    service.add_argument("--assign-public-ip", action="store_true", help="awsvpc tasks: give each a public IP")
    service.add_argument("--target-group-arn", help="register the first container's inference port with this "
                                                    "load balancer target group")
    service.set_defaults(func=cmd_service)

    iam = command(actions, "iam-policy",
                  "IAM documents: the EI permission and the roles' trust policies",
                  "mmsctl ecs iam-policy ei-connect > ei-connect.json\n"
                  "aws iam put-role-policy --role-name ecs-ei-task-role --policy-name ei-connect "
                  "--policy-document file://ei-connect.json")
    iam.add_argument("kind", choices=sorted(ecs.IAM_DOCUMENTS),
                     help="ei-connect (elastic-inference:Connect), task-trust (ecs-tasks.amazonaws.com), "
                          "instance-trust (ec2.amazonaws.com)")
    iam.set_defaults(func=cmd_iam)
    autoscaling.add_command(actions)
