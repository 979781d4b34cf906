"""Kubernetes manifests for the mmsctl images: a kustomize folder (``mmsctl k8s render``).

Everything here is pure but :func:`write`: :func:`manifests` returns the objects as
plain dicts, :func:`render` the folder's files as text. Nothing talks to a cluster;
tests/test_k8s.py builds the folder with ``kubectl kustomize`` and validates every
object with ``kubernetes-validate --strict``.

The container is the one the ECS task runs (:func:`mmsctl.docker.ecs.serve_command`,
the same profile, the same arguments) with Kubernetes' own parts around it:

* probes on the truth, not on MMS's ``/ping`` (200 with dead workers): a startupProbe
  on ``/readyz`` sized from the models' load time, readiness on ``/readyz`` and
  liveness on ``/healthz``, all on the exporter's port 8082;
* ``terminationGracePeriodSeconds`` = the server's ``--drain-timeout`` + the ECS
  stop margin (10 s for stopping MMS after the drain);
* CPU and memory requests equal to the limits (Guaranteed QoS), the CPUs being the
  vCPUs the profile plans its workers and OpenMP threads for;
* non-root, read-only root filesystem, emptyDir volumes for the state folder and
  the temporary files, no privilege escalation, every capability dropped;
* the Service and the NetworkPolicy open 8080 (inference) and 8082 (metrics and
  probes) only; the management API (8081) stays on the pod's 127.0.0.1;
* the HorizontalPodAutoscaler scales on requests per second per pod (from
  ``mmsctl_requests_total`` through prometheus-adapter) with the target that
  ``mmsctl ecs autoscaling`` computes from the same bench report
  (:func:`mmsctl.autoscaling.sizing`), and on CPU as a backstop.
"""
from .kustomize import *  # noqa: F401,F403
