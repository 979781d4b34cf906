"""Container images and Amazon ECS deployment for mmsctl-served models."""
