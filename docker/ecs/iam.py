"""The IAM documents an mmsctl deployment needs: role trust policies and the EI connect permission."""
from .taskdef import EcsError


def trust_policy(service_principal):
    """An IAM role trust policy for ``ecs-tasks.amazonaws.com`` (task and execution
    roles) or ``ec2.amazonaws.com`` (the container instances' role)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service_principal}, "Action": "sts:AssumeRole"}]}


def ei_connect_policy():
    """The permission an EI client needs (seed 000: only elastic-inference:Connect is required).

    Attach it to the task role for task-attached accelerators, to the instance
    role for accelerators attached by the launch template (seed 004).
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ElasticInferenceConnect", "Effect": "Allow", "Action": ["elastic-inference:Connect"],
        "Resource": "*"}]}


IAM_DOCUMENTS = {
    "ei-connect": ei_connect_policy,
    "task-trust": lambda: trust_policy("ecs-tasks.amazonaws.com"),
    "instance-trust": lambda: trust_policy("ec2.amazonaws.com"),
}


def iam_document(kind):
    try:
        return IAM_DOCUMENTS[kind]()
    except KeyError:
        raise EcsError("unknown IAM document %r: choose one of %s" % (kind, ", ".join(IAM_DOCUMENTS)))
