"""Container images and Amazon ECS deployment of mmsctl.

``Dockerfile.cpu|gpu|ei`` build the images (non-root, ``mmsctl serve --foreground``
under an init); :mod:`mmsctl.docker.ecs` writes the ECS API requests for them;
``ecs/cluster.yaml`` is the CloudFormation stack (cluster, container instances,
task definition, service).
"""
