"""Image decoding and preprocessing, as small pure functions.

Shared by every image handler (MXNet and ONNX engines): bytes in, float32 NCHW
arrays out, with the preprocessing read from the archive's signature.

Decoding: OpenCV (``opencv-python-headless``) decodes 8-bit RGB/greyscale JPEGs
(at a reduced DCT scale, like Pillow's draft) where it is installed, Pillow
everything else and everywhere else; both give the same pixels (tests/test_handlers.py
compares them). PNGs stay with Pillow: OpenCV saved 0.2-0.4 ms on a 451x300 PNG
but its libpng writes a warning line to the worker's stderr (so to MMS's log) for
every photo with a common non-standard colour profile, chelsea.png among them.
Resizing is always Pillow's filter, and only over the part of the image that
survives the centre crop (``box=``): OpenCV's resize has no antialiasing when it
shrinks, which moved top-5 ranks on 3 of 9 bundled photos, while the box resize
gives the full resize's pixels.
"""
import functools
import io
import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadRequest, PayloadTooLarge

# A 40000x40000 PNG is a few kilobytes on the wire and 4.8 GB once decoded.
# Refuse anything above this many pixels before decoding it.
MAX_PIXELS = 64 * 1024 * 1024

#: Formats PIL can decode at a reduced DCT scale (``Image.draft``); MPO is a camera's multi-picture JPEG.
DRAFT_FORMATS = ("JPEG", "MPO")

#: Formats and PIL modes OpenCV decodes to the same pixels as Pillow's ``convert("RGB")``.
OPENCV_MODES = {"JPEG": ("RGB", "L")}

#: spec "interpolation" -> PIL filter
RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def declared_size(payload):
    """(width, height) a PNG or GIF header declares, or None for other formats.

    PIL refuses zero-size images as unidentified; this names the real problem.

    >>> declared_size(b"GIF89a" + bytes([2, 0, 0, 0]))
    (2, 0)
    """
    if payload[:8] == b"\x89PNG\r\n\x1a\n" and payload[12:16] == b"IHDR" and len(payload) >= 24:
        return struct.unpack(">II", payload[16:24])
    if payload[:6] in (b"GIF87a", b"GIF89a") and len(payload) >= 10:
        return struct.unpack("<HH", payload[6:10])
    return None


@functools.lru_cache(maxsize=None)
def opencv():
    """The ``cv2`` module when importable, else None (checked once per process).

    OpenCV's own thread pool is limited to one thread: a worker's cores belong to the
    engine's intra-op threads (``OMP_NUM_THREADS``), and decoding one image is serial anyway.
    """
    try:
        import cv2
    except ImportError:
        return None
    cv2.setNumThreads(1)
    return cv2


def decoder_description():
    """What decodes images in this process, for reports.

    >>> decoder_description().endswith("Pillow crop-only resize")
    True
    """
    cv2 = opencv()
    decode = ("OpenCV %s (JPEG), Pillow %s (others)" % (cv2.__version__, Image.__version__) if cv2 is not None
              else "Pillow %s" % Image.__version__)
    return decode + ", Pillow crop-only resize"


def jpeg_scale(size, min_size):
    """The DCT scale denominator (1, 2, 4 or 8) that keeps both sides at least ``min_size``.

    >>> jpeg_scale((1280, 960), (256, 256)), jpeg_scale((451, 300), (256, 256)), jpeg_scale((4000, 3000), (256, 256))
    (2, 1, 8)
    """
    for scale in (8, 4, 2):
        if size[0] // scale >= min_size[0] and size[1] // scale >= min_size[1]:
            return scale
    return 1


def decode_with_opencv(cv2, payload, image, min_size):
    """``image`` (an opened, undecoded PIL image of ``payload``) decoded by OpenCV, as an RGB PIL image,
    or None when OpenCV should not decode it (a format or mode it would convert differently, or a
    failure: Pillow then decodes it and words the error)."""
    if image.mode not in OPENCV_MODES.get(image.format, ()):
        return None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # Pillow ignores EXIF orientation too
    if image.format == "JPEG" and min_size is not None:
        flags |= {1: 0, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}[jpeg_scale(image.size, min_size)]
    pixels = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), flags)
    if pixels is None or pixels.ndim != 3:
        return None
    return Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))


def decode_image(payload, max_pixels=MAX_PIXELS, min_size=None, use_opencv=True):
    """Decode JPEG/PNG/GIF/BMP/... bytes into an RGB PIL image.

    Any colour mode is accepted (greyscale, palette, RGBA, CMYK); the first frame
    of an animation is used. Raises BadRequest for what is not an image and
    PayloadTooLarge for images declaring more than ``max_pixels`` pixels (checked
    on the declared size, before anything is decoded).

    ``min_size`` (width, height): a JPEG is then decoded at the smallest DCT scale
    (1/2, 1/4, 1/8) that keeps both sides at least that large, which skips most of
    the decoding work for photos much larger than the model's input.

    ``use_opencv``: decode with OpenCV where it is installed and gives Pillow's pixels.
    """
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise BadRequest("expected an image body, got %s" % type(payload).__name__)
    if not payload:
        raise BadRequest("empty body: send the image bytes (JPEG, PNG, GIF or BMP)")
    try:
        image = Image.open(io.BytesIO(payload))
    except UnidentifiedImageError:
        size = declared_size(payload)
        if size is not None and 0 in size:
            raise BadRequest("image has zero size (%dx%d)" % size)
        raise BadRequest("body is not a recognised image (JPEG, PNG, GIF, BMP): %d bytes" % len(payload))
    except Image.DecompressionBombError:
        raise PayloadTooLarge("image too large: it declares far more than the %d pixels this model accepts "
                              "(a decompression bomb?)" % max_pixels)
    except (OSError, ValueError, SyntaxError) as err:
        raise BadRequest("image could not be decoded (truncated or corrupt): %s" % err)
    width, height = image.size
    if width < 1 or height < 1:
        raise BadRequest("image has zero size (%dx%d)" % (width, height))
    if width * height > max_pixels:
        raise PayloadTooLarge(
            "image declares %dx%d = %d pixels, more than the %d this model accepts"
            % (width, height, width * height, max_pixels))
    cv2 = opencv() if use_opencv else None
    if cv2 is not None:
        decoded = decode_with_opencv(cv2, payload, image, min_size)
        if decoded is not None:
            return decoded
    if min_size is not None and image.format in DRAFT_FORMATS:
        image.draft("RGB", tuple(int(side) for side in min_size))
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadRequest("image could not be decoded (truncated or corrupt %s): %s" % (image.format, err))


def draft_size(spec):
    """The smallest (width, height) an image may be decoded at for ``spec`` to give the same crop.

    With a ``resize`` (shorter side, then a centre crop) both sides must stay at least
    the size the shorter side is resized to; with a straight resize, at least width x height.

    >>> draft_size({"height": 224, "width": 224, "resize": 256})
    (256, 256)
    >>> draft_size({"height": 224, "width": 320, "resize": 0})
    (320, 224)
    """
    height, width = int(spec["height"]), int(spec["width"])
    resize = int(spec.get("resize", 0))
    if resize:
        side = max(resize, height, width)
        return side, side
    return width, height


def resized_size(size, shorter):
    """(width, height) once the shorter side of ``size`` is ``shorter`` pixels, keeping the aspect ratio.

    >>> resized_size((400, 200), 100), resized_size((451, 300), 256)
    ((200, 100), (385, 256))
    """
    width, height = size
    if width <= height:
        return shorter, max(1, round(height * shorter / width))
    return max(1, round(width * shorter / height)), shorter


def resize_and_crop(image, shorter, height, width, resample=Image.Resampling.BILINEAR):
    """``center_crop(resize_shorter(image, shorter), height, width)``, computing only the crop.

    Pillow's ``resize(box=)`` filters the source region that maps onto the crop, so the
    pixels equal the full resize's (within one grey level) at a fraction of the work.

    >>> resize_and_crop(Image.new("RGB", (451, 300)), 256, 224, 224).size
    (224, 224)
    """
    new_w, new_h = resized_size(image.size, shorter)
    if new_w < width or new_h < height:
        raise ValueError("cannot crop %dx%d out of %dx%d" % (width, height, new_w, new_h))
    left, top = (new_w - width) // 2, (new_h - height) // 2
    scale_x, scale_y = image.size[0] / new_w, image.size[1] / new_h
    box = (left * scale_x, top * scale_y, (left + width) * scale_x, (top + height) * scale_y)
    return image.resize((width, height), resample, box=box)


def resize_shorter(image, size, resample=Image.Resampling.BILINEAR):
    """Resize so the shorter side is ``size`` pixels, keeping the aspect ratio.

    >>> resize_shorter(Image.new("RGB", (400, 200)), 100).size
    (200, 100)
    """
    return image.resize(resized_size(image.size, size), resample)


def center_crop(image, height, width):
    """Crop the centre ``height`` x ``width`` region (the image must be large enough).

    >>> center_crop(Image.new("RGB", (300, 200)), 100, 100).size
    (100, 100)
    """
    img_w, img_h = image.size
    left = (img_w - width) // 2
    top = (img_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_array(image, spec):
    """Turn an RGB PIL image into a float32 (3, H, W) array as ``spec`` describes.

    ``spec`` keys: ``height``, ``width``, ``resize`` (shorter side before the
    centre crop; 0 resizes straight to height x width), ``mean`` and ``std``
    (per channel, on 0-255 pixels, in the model's channel order), ``channel_order``
    ("RGB" or "BGR"), ``interpolation`` (a key of RESAMPLING, default bilinear).

    >>> spec = {"height": 2, "width": 2, "resize": 0, "mean": [0, 0, 0], "std": [1, 1, 1]}
    >>> to_array(Image.new("RGB", (4, 4), (255, 0, 0)), spec)[:, 0, 0].tolist()
    [255.0, 0.0, 0.0]
    """
    height, width = int(spec["height"]), int(spec["width"])
    resize = int(spec.get("resize", 0))
    resample = RESAMPLING[spec.get("interpolation", "bilinear")]
    if resize:
        image = resize_and_crop(image, max(resize, height, width), height, width, resample)
    elif image.size != (width, height):
        image = image.resize((width, height), resample)
    channels = np.asarray(image).transpose(2, 0, 1)  # 3, H, W (RGB), uint8: reordered before it is 4x larger
    if spec.get("channel_order", "RGB").upper() == "BGR":
        channels = channels[::-1]
    pixels = channels.astype(np.float32, order="C")  # one contiguous copy, then normalised in place
    pixels -= np.asarray(spec.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32)[:, None, None]
    pixels /= np.asarray(spec.get("std", (1.0, 1.0, 1.0)), dtype=np.float32)[:, None, None]
    return pixels


def preprocess(payload, spec, max_pixels=MAX_PIXELS):
    """Bytes to a (3, H, W) float32 array: decode (a JPEG at reduced scale when it is
    large enough, see :func:`draft_size`), resize, crop, normalise."""
    return to_array(decode_image(payload, max_pixels=max_pixels, min_size=draft_size(spec)), spec)
