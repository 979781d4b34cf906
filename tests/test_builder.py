"""The archive builder: every validation error, determinism, manifest, inspect."""
import hashlib
import json
import os
import shutil
import zipfile

import pytest

from mmsctl import cli
from mmsctl.archives import builder, mar, mxnet_checkpoint
from mmsctl.archives.errors import InvalidInput, OutputExists, UnsafeArchive


@pytest.fixture
def config(resnet_checkpoint, tmp_path):
    def make(**changes):
        values = dict(name="resnet18", symbol=resnet_checkpoint["symbol"], params=resnet_checkpoint["params"],
                      synset=resnet_checkpoint["synset"], export_path=str(tmp_path),
                      engine="mxnet")  # the format under test; dual archives: test_engines.py
        values.update(changes)
        return mxnet_checkpoint.ResnetConfig(**values)
    return make


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_build_writes_manifest_signature_and_handlers(config, tmp_path):
    path = mxnet_checkpoint.build(config())
    assert path == str(tmp_path / "resnet18.mar")
    info = mar.describe(path)
    manifest = info["manifest"]
    assert manifest["runtime"] == "python"
    assert manifest["model"] == {"modelName": "resnet18", "handler": "mmsctl_handlers.image_classifier",
                                 "modelVersion": "1.0"}  # TorchServe's field (issue 18)
    assert manifest["engine"] == {"engineName": "MXNet", "engineVersion": "1.9.1"}
    signature = info["signature"]
    assert signature["inputs"] == [{"name": "data", "shape": [1, 3, 224, 224], "datatype": "FP32"}]
    assert signature["postprocess"]["apply_softmax"] is True  # the Gluon zoo net ends in logits
    assert signature["preprocess"]["mean"] == builder.PREPROCESS_PRESETS["imagenet"]["mean"]
    names = {e["name"] for e in info["entries"]}
    assert {"model-symbol.json", "model-0000.params", "synset.txt", "signature.json",
            "mmsctl_handlers/image_classifier.py", "mmsctl_handlers/base.py"} <= names
    params = next(e for e in info["entries"] if e["name"] == "model-0000.params")
    assert params["stored"], "weights are stored uncompressed so MMS unpacks them fast"


def test_same_inputs_give_byte_identical_archives(config, tmp_path):
    first = sha256(mxnet_checkpoint.build(config()))
    second = sha256(mxnet_checkpoint.build(config(force=True)))
    assert first == second


def test_existing_output_needs_force(config):
    mxnet_checkpoint.build(config())
    with pytest.raises(OutputExists, match="--force"):
        mxnet_checkpoint.build(config())


def test_no_temporary_file_left_behind(config, tmp_path):
    mxnet_checkpoint.build(config())
    assert sorted(os.listdir(tmp_path)) == ["resnet18.mar"]


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "ünï"])
def test_bad_names(config, name):
    with pytest.raises(InvalidInput, match="not allowed by MMS"):
        mxnet_checkpoint.build(config(name=name))


def test_missing_files(config, tmp_path):
    with pytest.raises(InvalidInput, match="symbol file .*nope.json does not exist"):
        mxnet_checkpoint.build(config(symbol=str(tmp_path / "nope.json")))
    with pytest.raises(InvalidInput, match="params file .*nope.params does not exist"):
        mxnet_checkpoint.build(config(params=str(tmp_path / "nope.params")))
    with pytest.raises(InvalidInput, match="synset file .*nope.txt does not exist"):
        mxnet_checkpoint.build(config(synset=str(tmp_path / "nope.txt")))


def test_files_that_do_not_parse(config, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput, match="is not an MXNet symbol JSON"):
        mxnet_checkpoint.build(config(symbol=str(bad)))
    junk = tmp_path / "junk.params"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidInput, match="is not an MXNet params file"):
        mxnet_checkpoint.build(config(params=str(junk)))


def export_resnet18(tmp_path, name, **kw):
    import mxnet as mx
    net = mx.gluon.model_zoo.vision.resnet18_v1(**kw)
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(str(tmp_path / name), 0)
    return str(tmp_path / (name + "-0000.params"))


def test_params_from_another_model(config, tmp_path):
    params = export_resnet18(tmp_path, "other", classes=10, prefix="othernet_")
    with pytest.raises(InvalidInput, match="does not match symbol .*parameters missing: resnetv1"):
        mxnet_checkpoint.build(config(params=params))


def test_params_of_another_shape(config, tmp_path):
    import mxnet as mx
    prefix = [k for k in mx.nd.load(config().params)][0].split(":")[1].split("_")[0] + "_"
    params = export_resnet18(tmp_path, "wide", classes=12, prefix=prefix)
    with pytest.raises(InvalidInput, match=r"has shape \(12, 512\).*needs \(10, 512\)"):
        mxnet_checkpoint.build(config(params=params))


def test_params_missing_a_weight(config, tmp_path):
    import mxnet as mx
    params = mx.nd.load(config().params)
    params.pop(sorted(params)[0])
    mx.nd.save(str(tmp_path / "partial.params"), params)
    with pytest.raises(InvalidInput, match="partial.params"):
        mxnet_checkpoint.build(config(params=str(tmp_path / "partial.params")))


def test_synset_with_wrong_class_count(config, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(InvalidInput, match="has 2 labels but the model has 10 classes"):
        mxnet_checkpoint.build(config(synset=str(short)))


def test_input_shape_the_params_do_not_fit(tmp_path):
    import mxnet as mx
    data = mx.sym.var("data")
    out = mx.sym.FullyConnected(mx.sym.flatten(data), num_hidden=2, name="fc")
    out.save(str(tmp_path / "mlp-symbol.json"))
    mx.nd.save(str(tmp_path / "mlp.params"), {"arg:fc_weight": mx.nd.zeros((2, 3 * 8 * 8)),
                                              "arg:fc_bias": mx.nd.zeros((2,))})
    (tmp_path / "synset.txt").write_text("a\nb\n")
    base = dict(name="mlp", symbol=str(tmp_path / "mlp-symbol.json"), params=str(tmp_path / "mlp.params"),
                synset=str(tmp_path / "synset.txt"), export_path=str(tmp_path))
    assert mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(input_shape=[1, 3, 8, 8], **base))
    with pytest.raises(InvalidInput, match=r"fc_weight has shape \(2, 192\).*needs \(2, 768\) for input"):
        mxnet_checkpoint.build(mxnet_checkpoint.ResnetConfig(input_shape=[1, 3, 16, 16], force=True, **base))


@pytest.mark.parametrize("text", ["1,3,224", "a,b,c,d", "1,1,224,224", "0,3,224,224"])
def test_parse_shape_refuses(text):
    with pytest.raises(InvalidInput, match="--input-shape"):
        builder.parse_shape(text)


def test_preprocess_options_refused(config):
    with pytest.raises(InvalidInput, match="--mean needs three numbers"):
        mxnet_checkpoint.build(config(mean=[1.0, 2.0]))
    with pytest.raises(InvalidInput, match="--std must not contain 0"):
        mxnet_checkpoint.build(config(std=[1.0, 0.0, 1.0]))
    with pytest.raises(InvalidInput, match="--preprocess"):
        mxnet_checkpoint.build(config(preprocess="fancy"))


def test_missing_export_path(config, tmp_path):
    with pytest.raises(InvalidInput, match="is not a folder"):
        mxnet_checkpoint.build(config(export_path=str(tmp_path / "absent")))


def test_nothing_written_when_validation_fails(config, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a\n")
    with pytest.raises(InvalidInput):
        mxnet_checkpoint.build(config(synset=str(short)))
    assert not (tmp_path / "resnet18.mar").exists()


def crafted(tmp_path, name):
    path = tmp_path / "evil.mar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", "{}")
        archive.writestr(name, "x")
    return str(path)


@pytest.mark.parametrize("entry", ["../escape.py", "/etc/passwd", "a/../../b", "..\\win.py"])
def test_inspect_refuses_escaping_entries(tmp_path, entry):
    with pytest.raises(UnsafeArchive):
        mar.describe(crafted(tmp_path, entry))
    with pytest.raises(UnsafeArchive):
        mar.extract(crafted(tmp_path, entry), str(tmp_path / "out"))


def test_cli_archive_and_inspect(resnet_checkpoint, tmp_path, capsys):
    argv = ["archive", "resnet", "--name", "r18", "--symbol", resnet_checkpoint["symbol"],
            "--params", resnet_checkpoint["params"], "--synset", resnet_checkpoint["synset"],
            "--export-path", str(tmp_path), "--preprocess", "raw", "--input-shape", "2,3,224,224",
            "--engine", "mxnet"]
    assert cli.main(argv) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("r18.mar")
    assert cli.main(["archive", "inspect", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["signature"]["preprocess"]["std"] == [1.0, 1.0, 1.0]
    assert info["signature"]["inputs"][0]["shape"] == [2, 3, 224, 224]
    assert cli.main(["archive", "inspect", path]) == 0
    text = capsys.readouterr().out
    assert "modelName" in text and "stored" in text and "model-0000.params" in text
    # a second build without --force is a clear error and exit 1, no traceback
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("mmsctl: error:") and "--force" in err and "Traceback" not in err


def test_cli_inspect_of_a_non_archive(tmp_path, capsys):
    junk = tmp_path / "junk.mar"
    junk.write_text("hello")
    assert cli.main(["archive", "inspect", str(junk)]) == 1
    assert "is not a .mar (zip) archive" in capsys.readouterr().err


def test_has_current_handlers_tells_a_stale_archive(config, tmp_path):
    path = mxnet_checkpoint.build(config())
    assert builder.has_current_handlers(path)
    stale = str(tmp_path / "stale.mar")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(stale, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "%s/base.py" % builder.HANDLER_PACKAGE:
                body += b"# an older handler\n"
            target.writestr(info, body)
    assert not builder.has_current_handlers(stale)
    (tmp_path / "not.mar").write_text("not an archive")
    assert not builder.has_current_handlers(str(tmp_path / "not.mar"))
    assert not builder.has_current_handlers(str(tmp_path / "missing.mar"))
