"""Container images and Amazon ECS deployment of mmsctl.

``Dockerfile.cpu|gpu|ei`` build the images (non-root, ``mmsctl serve --foreground``
under an init); :mod:`mmsctl.docker.ecs` writes the ECS API requests for them;
``ecs/cluster.yaml`` is the CloudFormation stack (cluster, container instances,
task definition, service) and ``ecs/scale-out.yaml`` the one with a load balancer and autoscaling;
:mod:`mmsctl.docker.images` gives a build this machine's pip settings.
"""
