"""A handler written the way MMS's custom-service documentation shows it.

This is the independent yardstick of ``mmsctl bench compare``: what a
user writes from MMS's docs ("Custom Service", the MXNet vision service example):
``mx.model.load_checkpoint`` + ``mx.mod.Module`` bound for inference, PIL to
decode the whole image, resize (the model's interpolation) and centre crop to 224, mean/std, softmax, the
top-5 as JSON. None of mmsctl's handler code is used. The preprocessing numbers
are read from ``docs_config.json``, written next to this file when the archive
is built, so that it runs the same model as the mmsctl archive it is compared with.
"""
import io
import json
import os

import mxnet as mx
import numpy as np
from PIL import Image


class MXNetVisionService(object):
    def __init__(self):
        self.initialized = False
        self.mx_model = None
        self.labels = None
        self.config = None

    def initialize(self, context):
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        gpu_id = properties.get("gpu_id")
        with open(os.path.join(model_dir, "docs_config.json")) as f:
            self.config = json.load(f)
        sym, arg_params, aux_params = mx.model.load_checkpoint(os.path.join(model_dir, "model"), 0)
        ctx = mx.cpu() if gpu_id is None else mx.gpu(gpu_id)
        data_shape = [(self.config["input_name"], (1, 3, self.config["height"], self.config["width"]))]
        self.mx_model = mx.mod.Module(symbol=sym, context=ctx, data_names=[self.config["input_name"]],
                                      label_names=None)
        self.mx_model.bind(for_training=False, data_shapes=data_shape)
        self.mx_model.set_params(arg_params, aux_params, allow_missing=True, allow_extra=True)
        with open(os.path.join(model_dir, "synset.txt")) as f:
            self.labels = [line.strip() for line in f if line.strip()]
        self.initialized = True

    def preprocess(self, batch):
        arrays = []
        mean = np.array(self.config["mean"], dtype=np.float32)
        std = np.array(self.config["std"], dtype=np.float32)
        for request in batch:
            data = request.get("data") or request.get("body")
            img = Image.open(io.BytesIO(data)).convert("RGB")
            width, height = img.size
            short = self.config["resize"]
            resample = Image.BICUBIC if self.config["interpolation"] == "bicubic" else Image.BILINEAR
            if width < height:
                img = img.resize((short, max(1, round(height * short / width))), resample)
            else:
                img = img.resize((max(1, round(width * short / height)), short), resample)
            width, height = img.size
            left, top = (width - self.config["width"]) // 2, (height - self.config["height"]) // 2
            img = img.crop((left, top, left + self.config["width"], top + self.config["height"]))
            pixels = (np.asarray(img, dtype=np.float32) - mean) / std
            arrays.append(pixels.transpose(2, 0, 1))
        return arrays

    def inference(self, arrays):
        outputs = []
        for array in arrays:
            self.mx_model.forward(mx.io.DataBatch([mx.nd.array(array[np.newaxis])]), is_train=False)
            outputs.append(self.mx_model.get_outputs()[0].asnumpy()[0])
        return outputs

    def postprocess(self, outputs):
        answers = []
        for scores in outputs:
            if self.config["apply_softmax"]:
                scores = np.exp(scores - scores.max())
                scores = scores / scores.sum()
            top = np.argsort(-scores)[:5]
            answers.append(json.dumps([{"probability": float(scores[i]), "class": self.labels[i]} for i in top]))
        return answers


_service = MXNetVisionService()


def handle(data, context):
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.postprocess(_service.inference(_service.preprocess(data)))
