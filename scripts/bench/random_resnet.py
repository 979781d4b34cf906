"""A large model with random weights: benchmarks need its size and compute, not its answers."""
import os
import tempfile

from mmsctl.archives import mxnet_checkpoint
from mmsctl.errors import UsageError


def build_random_resnet(export_path, layers=152, name=None, classes=1000, seed=0, force=False):
    """Archive a Gluon model-zoo ResNet v1 with random (seeded) weights: benchmarks
    need its size and compute, not its answers."""
    import mxnet as mx

    factory = getattr(mx.gluon.model_zoo.vision, "resnet%d_v1" % layers, None)
    if factory is None:
        raise UsageError("no Gluon model-zoo resnet%d_v1: choose 18, 34, 50, 101 or 152" % layers)
    name = name or "resnet-%d" % layers
    with tempfile.TemporaryDirectory(prefix="mmsctl-resnet-") as tmp:
        mx.random.seed(seed)
        net = factory(pretrained=False, classes=classes)
        net.initialize(mx.init.Xavier(magnitude=2.5))
        net.hybridize()
        net(mx.nd.zeros((1, 3, 224, 224))).wait_to_read()
        prefix = os.path.join(tmp, "resnet")
        net.export(prefix, 0)
        synset = os.path.join(tmp, "synset.txt")
        with open(synset, "w", encoding="utf-8") as handle:
            handle.writelines("n%08d random class %d\n" % (i, i) for i in range(classes))
        return mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(
            name=name, symbol=prefix + "-symbol.json", params=prefix + "-0000.params", synset=synset,
            export_path=export_path, force=force,
            description="ResNet-%d v1 with random weights (seed %d), for benchmarks" % (layers, seed)))
