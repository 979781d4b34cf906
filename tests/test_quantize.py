"""INT8 archives (``--quantize int8``): the accuracy gate, the record, and serving on a real MMS."""
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import requests
from PIL import Image

from mmsctl import cli
from mmsctl.archives import mar, quantize
from mmsctl.archives.errors import InvalidInput

from helpers import skimage_photo

#: Photographs whose int8 top-1 must equal fp32's. The bundled textures with no ImageNet class
#: (hubble_deep_field, ihc, grass, color, cell: fp32 top-1 at 0.05-0.13) can flip, and are left out.
PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
          "retina.jpg", "camera.png", "horse.png"]
CAMERA_SIZE = (1280, 960)


def camera_jpeg(name):
    buffer = io.BytesIO()
    Image.open(skimage_photo(name)).convert("RGB").resize(CAMERA_SIZE, Image.Resampling.BICUBIC).save(
        buffer, "JPEG", quality=90)
    return buffer.getvalue()


def mmsctl(*args):
    return subprocess.run([sys.executable, "-m", "mmsctl.cli", *args], capture_output=True, text=True, timeout=300)


# -- options, in one line each, before anything is built ---------------------------------------------------
@pytest.mark.parametrize("args, error", [
    (["archive", "onnx", "--name", "t", "--model", "t.onnx", "--quantize", "int8"], "takes image classifiers"),
    (["archive", "efficientnet-lite0", "--calibration", "."], "--calibration applies to --quantize int8 only"),
    (["archive", "efficientnet-lite0", "--quantize", "int8", "--engine", "mxnet", "--export-path", "NEW"],
     "leave out --engine mxnet"),
    (["archive", "efficientnet-lite0", "--quantize", "int8", "--min-agreement", "1.5", "--export-path", "NEW"],
     "--min-agreement 1.5: give a fraction from 0 to 1"),
    (["archive", "efficientnet-lite0", "--quantize", "int8", "--calibration", "no-such-dir", "--export-path", "NEW"],
     "--calibration no-such-dir: not a folder of images"),
    (["archive", "efficientnet-lite0", "--quantize", "int4"], "invalid choice: 'int4'"),
])
def test_bad_quantize_options_are_one_line(tmp_path, capsys, args, error):
    args = [str(tmp_path) if arg == "NEW" else arg for arg in args]
    try:
        status = cli.main(args)
    except SystemExit as exit_:  # argparse's own refusals, and --calibration without --quantize
        status = exit_.code
    stderr = capsys.readouterr().err + (status if isinstance(status, str) else "")
    assert status not in (0, None)
    assert error in stderr and len(stderr.strip().splitlines()[-1]) > 0, stderr
    assert not os.listdir(tmp_path)


def test_empty_and_small_folders_are_refused(tmp_path):
    spec = {"height": 224, "width": 224, "resize": 256, "mean": [127] * 3, "std": [128] * 3}
    with pytest.raises(InvalidInput, match="no image files"):
        quantize.calibration_set(quantize.QuantizeOptions(calibration=str(tmp_path)), spec)
    for index in range(3):
        Image.new("RGB", (300, 300), (index, 50, 90)).save(tmp_path / ("p%d.png" % index))
    with pytest.raises(InvalidInput, match="3 images, the gate needs at least 20"):
        quantize.validation_set(quantize.QuantizeOptions(validation=str(tmp_path)), spec)
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    with pytest.raises(InvalidInput, match="bad.jpg cannot be used: body is not a recognised image"):
        quantize.calibration_set(quantize.QuantizeOptions(calibration=str(tmp_path)), spec)


def test_default_validation_views_are_not_the_calibration_inputs():
    spec = {"height": 224, "width": 224, "resize": 256, "mean": [127] * 3, "std": [128] * 3,
            "interpolation": "bicubic"}
    calibration, _ = quantize.calibration_set(quantize.QuantizeOptions(), spec)
    validation, source = quantize.validation_set(quantize.QuantizeOptions(), spec)
    assert len(calibration) == len(quantize.CALIBRATION_PHOTOS) and len(validation) >= 100, source
    for array in calibration:
        assert min(float(abs(array - other).max()) for other in validation) > 0.05


# -- the build and its gate ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_store(model_store, tmp_path_factory):
    """The default fp32 archive and its int8 build, side by side (CLI, as a user builds it)."""
    store = tmp_path_factory.mktemp("int8_store")
    shutil.copy(os.path.join(model_store, "efficientnet-lite0.mar"), store)
    result = mmsctl("archive", "efficientnet-lite0", "--name", "eff-int8", "--quantize", "int8",
                    "--export-path", str(store))
    assert result.returncode == 0, result.stderr
    assert "eff-int8: int8 accepted: top-1 agreement with fp32" in result.stderr
    print(result.stderr.strip().splitlines()[-1])
    return str(store)


def test_int8_archive_records_its_quantization(int8_store):
    info = mar.describe(os.path.join(int8_store, "eff-int8.mar"))
    record = info["signature"]["quantization"]
    assert record["method"].startswith("int8 static QDQ")
    assert record["calibration"]["inputs"] == len(quantize.CALIBRATION_PHOTOS)
    assert record["validation"]["inputs"] == quantize.VALIDATION_VIEWS
    assert quantize.DEFAULT_MIN_AGREEMENT <= record["top1_agreement"] <= 1 and 3 <= record["top5_overlap"] <= 5
    fp32 = mar.describe(os.path.join(int8_store, "efficientnet-lite0.mar"))
    assert [engine["name"] for engine in fp32["signature"]["engines"]] == ["onnxruntime", "mxnet"]
    assert record["int8_bytes"] < record["fp32_bytes"] / 3
    sizes = {entry["name"]: entry["size"] for entry in info["entries"]}
    assert sizes["model.onnx"] == record["int8_bytes"] and "model-0000.params" not in sizes
    shown = mmsctl("archive", "inspect", os.path.join(int8_store, "eff-int8.mar")).stdout
    assert "top-1 agreement with fp32 %s (minimum 0.85)" % record["top1_agreement"] in shown
    assert "fp32 model sha256 %s" % record["fp32_sha256"] in shown
    assert "fp32 (not quantized)" in mmsctl("archive", "inspect", os.path.join(int8_store, "efficientnet-lite0.mar")).stdout


@pytest.mark.slow
@pytest.mark.parametrize("calibration, at_most", [
    ([("grey.png", Image.new("RGB", (300, 300), (128, 128, 128)))], 0.05),  # wrong inputs: a flat image (0.000)
    ([("moon.png", None)], 0.849),  # too few: one greyscale photo unlike what it serves (measured 0.783)
])
def test_gate_refuses_a_badly_calibrated_model_naming_the_figures(tmp_path, calibration, at_most):
    folder = tmp_path / "calibration"
    folder.mkdir()
    for name, image in calibration:
        if image is None:
            shutil.copy(skimage_photo(name), folder / name)
        else:
            image.save(folder / name)
    store = tmp_path / "store"
    store.mkdir()
    result = mmsctl("archive", "efficientnet-lite0", "--quantize", "int8", "--calibration", str(folder),
                    "--export-path", str(store))
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    print(line)
    found = re.match(r"mmsctl: error: efficientnet-lite0: the int8 model is refused: top-1 agreement with fp32 "
                     r"(\d\.\d{3}) ", line)
    assert found and float(found.group(1)) <= at_most, line
    assert "on 120 validation inputs (minimum 0.850)" in line and "calibrated on 1 inputs" in line
    assert not os.listdir(store)


# -- served ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_server(servers, int8_store):
    return servers.start(int8_store, {"fp32": "efficientnet-lite0.mar", "int8": "eff-int8.mar"})


def test_int8_serves_the_fp32_top1_on_every_photo(int8_server):
    bodies = [(name, open(skimage_photo(name), "rb").read()) for name in PHOTOS]
    bodies += [("%s as a %dx%d JPEG" % ((name,) + CAMERA_SIZE), camera_jpeg(name)) for name in ("chelsea.png", "coffee.png")]
    assert len(bodies) == len(PHOTOS) + 2
    for name, body in bodies:
        answers = {}
        for model in ("fp32", "int8"):
            response = requests.post("%s/predictions/%s" % (int8_server.inference_url, model), data=body, timeout=60)
            assert response.status_code == 200, response.text
            answers[model] = response.json()
        print("%s: fp32 %s %.3f, int8 %s %.3f" % (name, answers["fp32"][0]["class"], answers["fp32"][0]["probability"],
                                                answers["int8"][0]["class"], answers["int8"][0]["probability"]))
        assert answers["int8"][0]["class"] == answers["fp32"][0]["class"], name
        assert len({a["class"] for a in answers["int8"]} & {a["class"] for a in answers["fp32"]}) >= 3, name


def test_int8_worker_logs_its_engine(int8_server):
    log_dir = os.path.join(int8_server.state_dir, "logs")
    logs = "".join(open(os.path.join(log_dir, name), errors="replace").read()
                   for name in os.listdir(log_dir) if name.endswith(".log"))
    assert "model int8 runs on onnxruntime" in logs, logs[-2000:]


def calibration_folder(path, names):
    path.mkdir()
    for name in names:
        shutil.copy(skimage_photo(name), path / name)
    return str(path)


def test_onnx_image_classifier_quantizes_with_a_calibration_folder(int8_store, tmp_path):
    """`archive onnx --synset ... --quantize int8 --calibration DIR`, on the default model's own ONNX export."""
    folder = mar.extract(os.path.join(int8_store, "efficientnet-lite0.mar"), str(tmp_path / "fp32"))
    calibration = calibration_folder(tmp_path / "calibration", quantize.CALIBRATION_PHOTOS[:3])
    result = mmsctl("archive", "onnx", "--name", "eff-onnx-int8", "--model", os.path.join(folder, "model.onnx"),
                    "--synset", os.path.join(folder, "synset.txt"), "--preprocess", "efficientnet",
                    "--interpolation", "bicubic", "--quantize", "int8", "--calibration", calibration,
                    "--export-path", str(tmp_path))
    assert result.returncode == 0, result.stderr
    record = mar.describe(os.path.join(tmp_path, "eff-onnx-int8.mar"))["signature"]["quantization"]
    assert record["calibration"] == {"inputs": 3, "source": "3 images in %s" % calibration}
    assert record["top1_agreement"] >= quantize.DEFAULT_MIN_AGREEMENT


@pytest.mark.slow
def test_resnet_checkpoint_quantizes_through_its_onnx_export(resnet_checkpoint, tmp_path):
    """`archive resnet ... --quantize int8`: the export, quantized (random weights: the gate is lowered)."""
    calibration = calibration_folder(tmp_path / "calibration", quantize.CALIBRATION_PHOTOS)
    result = mmsctl("archive", "resnet", "--name", "r18-int8", "--symbol", resnet_checkpoint["symbol"],
                    "--params", resnet_checkpoint["params"], "--synset", resnet_checkpoint["synset"],
                    "--quantize", "int8", "--calibration", calibration, "--min-agreement", "0",
                    "--export-path", str(tmp_path))
    assert result.returncode == 0, result.stderr
    info = mar.describe(os.path.join(tmp_path, "r18-int8.mar"))
    assert [info["signature"]["engine"]["name"]] == ["onnxruntime"] and "engines" not in info["signature"]
    assert info["signature"]["quantization"]["min_agreement"] == 0
    assert "r18-int8: int8 accepted: top-1 agreement with fp32" in result.stderr
