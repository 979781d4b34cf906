"""INT8 archives: static quantization of an image classifier's ONNX model, behind an accuracy gate.

``mmsctl archive efficientnet-lite0|resnet|onnx ... --quantize int8`` runs this after the
fp32 model is built and checked:

1. **Calibration.** The calibration photos (``--calibration DIR``; by default the colour
   photos that ship with scikit-image, already installed for the quickstart) go through
   the archive's own preprocessing (:func:`mmsctl.handlers.imaging.preprocess`, exactly
   what a worker does with a request), and onnxruntime's static quantizer records each
   activation's range (MinMax). Weights are quantized per output channel (int8), activations
   per tensor (uint8: the u8s8 kernels are the fast ones on x86 with VNNI), in QDQ format.
   Batch-norm is folded into the convolutions first (onnxruntime's own pre-processing).
2. **The gate.** The int8 model is compared with the fp32 model on a validation set kept
   apart from the calibration inputs (``--validation DIR``; by default 120 augmented views
   of the bundled photos: random crops, mirrors, brightness and contrast changes, none of
   them a calibration input). It must give the fp32 model's top-1 class on at least
   ``--min-agreement`` of them, or the archive is refused in one line with the figures.
3. **The record.** ``signature.json`` gets a ``quantization`` entry: method, counts,
   agreement, mean top-5 overlap, and the fp32 model's SHA-256; ``archive inspect`` shows it.

Why 0.85 by default (measured on the default model, onnxruntime 1.32.0, the 120 default
views): calibrated on the 5 default photos, 0.883 top-1 agreement (mean top-5 overlap 4.33);
on 10 photos 0.892; on one unrelated greyscale photo (moon.png) 0.825; on one flat grey
image 0.000. Most disagreements are views whose fp32 top-2 are nearly tied (cropped cats
that are 'tiger cat' or 'tabby' by a hair), which no int8 model keeps exactly.
"""
import contextlib
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mmsctl.files import read_regular
from mmsctl.handlers import imaging
from mmsctl.handlers.errors import HandlerError

from .errors import InvalidInput

METHODS = ("int8",)
DEFAULT_MIN_AGREEMENT = 0.85
#: scikit-image's colour photos (CC0 / public domain), the default calibration set.
CALIBRATION_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")
#: Photos whose augmented views make the default validation set (greyscale ones included: a
#: server gets those too).
VALIDATION_PHOTOS = CALIBRATION_PHOTOS + ("motorcycle_right.png", "retina.jpg", "hubble_deep_field.jpg",
                                          "ihc.png", "camera.png", "horse.png", "coins.png")
VALIDATION_VIEWS = 120
MIN_VALIDATION = 20
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class QuantizeOptions:
    """What ``--quantize``, ``--calibration``, ``--validation`` and ``--min-agreement`` asked for."""

    method: str = "int8"
    calibration: Optional[str] = None
    validation: Optional[str] = None
    min_agreement: float = DEFAULT_MIN_AGREEMENT

    def check(self):
        if self.method not in METHODS:
            raise InvalidInput("--quantize %r: choose one of %s" % (self.method, ", ".join(METHODS)))
        if not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidInput("--min-agreement %s: give a fraction from 0 to 1 (default %s)"
                               % (self.min_agreement, DEFAULT_MIN_AGREEMENT))
        for folder, option in ((self.calibration, "--calibration"), (self.validation, "--validation")):
            if folder is not None and not os.path.isdir(folder):
                raise InvalidInput("%s %s: not a folder of images" % (option, folder))
        return self


def bundled_photo_folder():
    """scikit-image's data folder (its photos ship in the wheel, so no download)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInput("--quantize without --calibration calibrates on scikit-image's photos, and "
                           "scikit-image is not installed: pip install -r requirements/runtime.txt, or give "
                           "--calibration DIR")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def image_files(folder, option):
    """The image files directly in ``folder``, sorted; refuses an empty folder in one line."""
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES))
    paths = [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]
    if not paths:
        raise InvalidInput("%s %s: no image files (%s) in it" % (option, folder, ", ".join(IMAGE_SUFFIXES)))
    return paths


def served_inputs(paths, spec, option):
    """Each file through the worker's own preprocessing; a file it refuses is named in one line."""
    arrays = []
    for path in paths:
        try:
            arrays.append(imaging.preprocess(read_regular(path), spec))
        except HandlerError as err:  # BadRequest, PayloadTooLarge: the worker would refuse it too
            raise InvalidInput("%s: %s cannot be used: %s" % (option, path, err.message))
        except OSError as err:
            raise InvalidInput("%s: %s cannot be read: %s" % (option, path, err.strerror or err))
    return arrays


def augmented_views(images, count, seed=0):
    """``count`` seeded views of the RGB PIL ``images``, round robin: a random crop of 60-100% of
    each side, a mirror half the time, brightness and contrast scaled by 0.7-1.3.

    >>> from PIL import Image
    >>> views = augmented_views([Image.new("RGB", (100, 80), (10, 20, 30))], 3)
    >>> [view.mode for view in views], len({view.size for view in views}) > 1
    (['RGB', 'RGB', 'RGB'], True)
    """
    from PIL import ImageEnhance, ImageOps
    rng = np.random.default_rng(seed)
    views = []
    for index in range(count):
        image = images[index % len(images)]
        width, height = image.size
        scale = rng.uniform(0.6, 1.0)
        crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
        left, top = int(rng.uniform(0, width - crop_w + 1)), int(rng.uniform(0, height - crop_h + 1))
        view = image.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            view = ImageOps.mirror(view)
        view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.7, 1.3))
        views.append(ImageEnhance.Contrast(view).enhance(rng.uniform(0.7, 1.3)))
    return views


def calibration_set(options, spec):
    """(arrays, description) for calibration."""
    if options.calibration:
        paths = image_files(options.calibration, "--calibration")
        return served_inputs(paths, spec, "--calibration"), "%d images in %s" % (len(paths), options.calibration)
    folder = bundled_photo_folder()
    paths = [os.path.join(folder, name) for name in CALIBRATION_PHOTOS]
    return served_inputs(paths, spec, "--calibration"), "scikit-image photos: " + ", ".join(CALIBRATION_PHOTOS)


def validation_set(options, spec):
    """(arrays, description) for the gate, never the calibration inputs themselves."""
    if options.validation:
        paths = image_files(options.validation, "--validation")
        if len(paths) < MIN_VALIDATION:
            raise InvalidInput("--validation %s: %d images, the gate needs at least %d to measure agreement"
                               % (options.validation, len(paths), MIN_VALIDATION))
        return served_inputs(paths, spec, "--validation"), "%d images in %s" % (len(paths), options.validation)
    from PIL import Image
    folder = bundled_photo_folder()
    images = [Image.open(os.path.join(folder, name)).convert("RGB") for name in VALIDATION_PHOTOS]
    arrays = [imaging.to_array(view, spec) for view in augmented_views(images, VALIDATION_VIEWS)]
    return arrays, "%d augmented views (seed 0) of %d scikit-image photos" % (len(arrays), len(images))


@contextlib.contextmanager
def quiet_quantizer():
    """onnxruntime's quantizer logs advice through the root logger; a build prints one line."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(model_bytes, input_name, calibration):
    """The int8 QDQ model (bytes) of ``model_bytes``, calibrated on ``calibration`` arrays (C, H, W)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{input_name: array[np.newaxis]} for array in calibration])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="mmsctl-quantize-") as tmp, quiet_quantizer():
        fp32, folded, int8 = (os.path.join(tmp, name) for name in ("fp32.onnx", "folded.onnx", "int8.onnx"))
        with open(fp32, "wb") as handle:
            handle.write(model_bytes)
        # Folds batch-norm into the convolutions (measured: without it the int8 model was slower than fp32).
        quant_pre_process(fp32, folded, skip_symbolic_shape=True)
        quantize_static(folded, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return read_regular(int8)


def compare_models(fp32_bytes, int8_bytes, input_name, arrays):
    """(top-1 agreement, mean top-5 overlap) of the int8 model against the fp32 one on ``arrays``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
                for model in (fp32_bytes, int8_bytes)]
    agree, overlap = 0, 0
    for array in arrays:
        scores = [session.run(None, {input_name: array[np.newaxis]})[0].reshape(-1) for session in sessions]
        tops = [np.argsort(-score, kind="stable")[:5] for score in scores]
        agree += int(tops[0][0] == tops[1][0])
        overlap += len(set(tops[0].tolist()) & set(tops[1].tolist()))
    return agree / len(arrays), overlap / len(arrays)


def quantize_archive(signature, files, model_file, options, name, note):
    """Replace ``files[model_file]`` (fp32 ONNX) by its int8 model and record how in ``signature``;
    ``note(line)`` hears the gate's figures. Raises InvalidInput, in one line with the figures, when the
    gate refuses it."""
    import onnxruntime as ort
    options.check()
    spec = signature["preprocess"]
    input_name = signature["inputs"][0]["name"]
    fp32 = files[model_file]
    calibration, calibration_source = calibration_set(options, spec)
    validation, validation_source = validation_set(options, spec)
    int8 = quantize_int8(fp32, input_name, calibration)
    agreement, overlap = compare_models(fp32, int8, input_name, validation)
    figures = ("top-1 agreement with fp32 %.3f on %d validation inputs (minimum %.3f), mean top-5 overlap %.2f, "
               "calibrated on %d inputs" % (agreement, len(validation), options.min_agreement, overlap,
                                            len(calibration)))
    if agreement < options.min_agreement:
        raise InvalidInput("%s: the int8 model is refused: %s. Calibrate on more photos like the ones it will "
                           "serve (--calibration DIR), or lower --min-agreement if that loss is acceptable"
                           % (name, figures))
    files[model_file] = int8
    signature["quantization"] = {
        "method": "int8 static QDQ (onnxruntime %s): weights int8 per channel, activations uint8 per tensor, "
                  "MinMax calibration" % ort.__version__,
        "calibration": {"inputs": len(calibration), "source": calibration_source},
        "validation": {"inputs": len(validation), "source": validation_source},
        "top1_agreement": round(agreement, 4),
        "top5_overlap": round(overlap, 3),
        "min_agreement": options.min_agreement,
        "fp32_sha256": hashlib.sha256(fp32).hexdigest(),
        "fp32_bytes": len(fp32),
        "int8_bytes": len(int8),
    }
    note("%s: int8 accepted: %s" % (name, figures))
