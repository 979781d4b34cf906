"""Amazon ECS requests for the mmsctl images, as plain dicts.

Every function here but :func:`load_task_definition` is pure: it returns the
body of one ECS API request (``RegisterTaskDefinition``, ``CreateService``) or an
IAM policy document, ready for ``aws ecs register-task-definition
--cli-input-json file://...``. Nothing talks to AWS; tests/test_ecs.py checks
the output against botocore's ECS model and runs it through moto.

What the generated tasks guarantee:

* the container runs ``mmsctl serve --foreground --public`` as a non-root user
  under ECS's init process (``linuxParameters.initProcessEnabled``), so a
  SIGTERM from ``docker stop`` reaches the server's whole process tree;
* only the inference port is mapped; the management API stays on the
  container's 127.0.0.1, where the health check (``mmsctl health``) reads it;
* the profile's thread settings (``build_profile(...).environment``) are in the
  container's environment and on its command line, so the server inside plans
  for the same vCPUs as the task.

Elastic Inference (EI) is retired by AWS (no new customers since April 2023,
removed from EC2/ECS since): the ``ei`` requests are kept for accounts that
still have it and for seed 000's CPU-versus-EI comparison; Inf1 (Neuron) is the
forward path for accelerated MXNet on ECS (:func:`neuron_task_definition`).

Modules: :mod:`.taskdef` (CPU, GPU and EI task definitions), :mod:`.neuron` (Inf1), :mod:`.services`
(CreateService), :mod:`.iam` (policies), :mod:`.scaling` (load balancer, autoscaling, capacity provider);
``cluster.yaml`` and ``scale-out.yaml`` are the CloudFormation stacks beside them.
"""
from .iam import IAM_DOCUMENTS, ei_connect_policy, iam_document, trust_policy  # noqa: F401
from .neuron import NeuronOptions, neuron_devices, neuron_task_definition  # noqa: F401
from .services import deployment_configuration, load_task_definition, service  # noqa: F401
from .taskdef import *  # noqa: F401,F403 (the constants, TaskOptions, task_definition, EcsError)
