"""``mmsctl archive resnet | efficientnet-lite0 | onnx | inspect``: build and read ``.mar`` archives."""
import json

from mmsctl.archives import builder, mar, mxnet_checkpoint, onnx_model, quantize

from .common import command, floats, note, print_json


def quantize_options(args):
    """``quantize.QuantizeOptions`` from --quantize and its options, or None for an fp32 archive."""
    if args.quantize is None:
        for option, given in (("--calibration", args.calibration), ("--validation", args.validation)):
            if given is not None:
                raise SystemExit("mmsctl: error: %s applies to --quantize int8 only" % option)
        return None
    return quantize.QuantizeOptions(method=args.quantize, calibration=args.calibration, validation=args.validation,
                                    min_agreement=args.min_agreement)


def cmd_archive_resnet(args):
    config = mxnet_checkpoint.ResnetConfig(
        name=args.name, symbol=args.symbol, params=args.params, synset=args.synset, export_path=args.export_path,
        input_shape=builder.parse_shape(args.input_shape), preprocess=args.preprocess, resize=args.resize,
        mean=args.mean, std=args.std, channel_order=args.channel_order, interpolation=args.interpolation,
        topk=args.topk, force=args.force, engine=args.engine, quantize=quantize_options(args))
    print(mxnet_checkpoint.build(config, note=note))


def cmd_archive_efficientnet(args):
    print(mxnet_checkpoint.build_efficientnet_lite0(args.export_path, name=args.name, force=args.force,
                                                    engine=args.engine, note=note, quantize=quantize_options(args)))


def cmd_archive_onnx(args):
    config = onnx_model.OnnxConfig(
        name=args.name, model=args.model, synset=args.synset, engine=args.engine, export_path=args.export_path,
        input_shape=builder.parse_shape(args.input_shape) if args.input_shape else None, preprocess=args.preprocess,
        resize=args.resize, mean=args.mean, std=args.std, channel_order=args.channel_order,
        interpolation=args.interpolation, topk=args.topk, force=args.force, quantize=quantize_options(args))
    print(onnx_model.build(config, note=note))


def cmd_archive_inspect(args):
    info = mar.describe(args.archive)
    if args.json:
        print_json(info)
        return
    print("archive: %s" % info["path"])
    print("model: " + mar.model_line(info["signature"]))
    print("manifest:")
    print("  " + json.dumps(info["manifest"], indent=2, sort_keys=True).replace("\n", "\n  "))
    print("servers:")
    for line in mar.server_lines(info["manifest"]):
        print("  " + line)
    print("engines (the worker's preference order):")
    for line in mar.engine_lines(info["signature"]):
        print("  " + line)
    print("quantization:")
    for line in mar.quantization_lines(info["signature"]):
        print("  " + line)
    print("entries:")
    for entry in info["entries"]:
        print("  %12d  %-8s %s" % (entry["size"], "stored" if entry["stored"] else "deflated", entry["name"]))


def _add_image_options(parser):
    """Preprocessing and top-k options, shared by every image-classifier archive kind."""
    parser.add_argument("--preprocess", default="imagenet", choices=list(builder.PREPROCESS_PRESETS),
                        help="pixel normalisation: imagenet mean/std (Gluon zoo), raw 0-255 (classic MMS "
                             "resnet-152), efficientnet (x-127)/128 (default imagenet)")
    parser.add_argument("--resize", type=int, help="shorter side before the centre crop (default H*256/224)")
    parser.add_argument("--mean", type=floats, help="per-channel mean on 0-255 pixels, e.g. 123.675,116.28,103.53")
    parser.add_argument("--std", type=floats, help="per-channel std on 0-255 pixels")
    parser.add_argument("--channel-order", choices=["RGB", "BGR"])
    parser.add_argument("--interpolation", default="bilinear", choices=list(builder.INTERPOLATIONS))
    parser.add_argument("--topk", type=int, default=5, help="classes in each answer (default 5)")


def _add_quantize_options(parser):
    """--quantize and the options of its accuracy gate (every image-classifier archive kind)."""
    group = parser.add_argument_group("int8 (--quantize int8: onnxruntime only, behind an accuracy gate)")
    group.add_argument("--quantize", choices=list(quantize.METHODS),
                       help="int8: static quantization (per-channel int8 weights, uint8 activations) of the ONNX "
                            "model, calibrated through the archive's own preprocessing; refused when it disagrees "
                            "with fp32 too often (see --min-agreement)")
    group.add_argument("--calibration", metavar="DIR",
                       help="calibration photos, like those it will serve (default: scikit-image's 5 colour photos)")
    group.add_argument("--validation", metavar="DIR",
                       help="photos for the gate, none of them calibration photos, at least %d (default: %d "
                            "augmented views of scikit-image's photos)" % (quantize.MIN_VALIDATION,
                                                                             quantize.VALIDATION_VIEWS))
    group.add_argument("--min-agreement", type=float, default=quantize.DEFAULT_MIN_AGREEMENT, metavar="FRACTION",
                       help="smallest share of validation inputs on which int8 must give fp32's top-1 class "
                            "(default %s)" % quantize.DEFAULT_MIN_AGREEMENT)


def add_commands(sub):
    archive = command(sub, "archive", "build and inspect .mar archives",
                      "mmsctl archive efficientnet-lite0 --export-path model_store")
    kinds = archive.add_subparsers(dest="kind", metavar="KIND", required=True)

    resnet = command(kinds, "resnet", "archive an MXNet symbol + params image classifier (ResNet family)",
                     "mmsctl archive resnet --name resnet-152 --symbol resnet-152-symbol.json \\\n"
                      "    --params resnet-152-0000.params --synset synset.txt --preprocess raw "
                      "--export-path model_store")
    resnet.add_argument("--name", required=True, help="model name (MMS pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)")
    resnet.add_argument("--symbol", required=True, help="X-symbol.json")
    resnet.add_argument("--params", required=True, help="X-0000.params")
    resnet.add_argument("--synset", required=True, help="labels, one per class, e.g. 'n02123045 tabby, tabby cat'")
    resnet.add_argument("--export-path", default=".", help="folder the NAME.mar is written to (default: .)")
    resnet.add_argument("--input-shape", default="1,3,224,224",
                        help="N,C,H,W; N is the batch the handler runs at once (default 1,3,224,224)")
    _add_image_options(resnet)
    _add_quantize_options(resnet)
    resnet.add_argument("--force", action="store_true", help="overwrite an existing archive")
    resnet.add_argument("--engine", default="auto", choices=["auto", "mxnet", "onnxruntime"],
                        help="auto (default): the checkpoint and its ONNX export (checked to answer alike within "
                             "1e-4), served on onnxruntime, on MXNet where needed (EI, no onnxruntime); MXNet only "
                             "when the export fails. mxnet: the checkpoint only; onnxruntime: the export only")
    resnet.set_defaults(func=cmd_archive_resnet)

    eff = command(kinds, "efficientnet-lite0",
                  "the default archive: EfficientNet-Lite0 with real ImageNet weights (offline)",
                  "mmsctl archive efficientnet-lite0 --export-path model_store\n"
                  "mmsctl archive efficientnet-lite0 --name efficientnet-lite0-int8 --quantize int8 "
                  "--export-path model_store")
    eff.add_argument("--export-path", default=".", help="folder the archive is written to (default: .)")
    eff.add_argument("--name", default="efficientnet-lite0", help="model name (default efficientnet-lite0)")
    eff.add_argument("--force", action="store_true", help="overwrite an existing archive")
    eff.add_argument("--engine", default="auto", choices=["auto", "mxnet", "onnxruntime"],
                     help="auto (default): MXNet checkpoint and ONNX export, the worker picks; or only one of them")
    _add_quantize_options(eff)
    eff.set_defaults(func=cmd_archive_efficientnet)

    onnx = command(kinds, "onnx",
                   "archive an ONNX model: an image classifier (--synset) or a tensor model (v2 JSON protocol)",
                   "mmsctl archive onnx --name resnet50 --model resnet50.onnx --synset synset.txt "
                    "--export-path model_store\n"
                    "mmsctl archive onnx --name bert --model bert.onnx --export-path model_store\n"
                    "mmsctl archive onnx --name resnet50-mx --model resnet50.onnx --synset synset.txt "
                    "--engine mxnet")
    onnx.add_argument("--name", required=True, help="model name (MMS pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)")
    onnx.add_argument("--model", required=True, help="FILE.onnx (weights inside the file)")
    onnx.add_argument("--synset", help="labels, one per class: makes an image classifier answering top-k "
                                       "classes; without it, a tensor model taking Open Inference Protocol v2 JSON")
    onnx.add_argument("--engine", default="onnxruntime", choices=["onnxruntime", "mxnet"],
                      help="onnxruntime (default: CUDA when MMS gives the worker a GPU, else CPU) or mxnet "
                           "(converted at build time through MXNet's ONNX importer: CPU, GPU, Elastic Inference)")
    onnx.add_argument("--export-path", default=".", help="folder the NAME.mar is written to (default: .)")
    onnx.add_argument("--force", action="store_true", help="overwrite an existing archive")
    image = onnx.add_argument_group("image classifiers (with --synset)")
    image.add_argument("--input-shape", help="N,3,H,W where the model leaves H and W open (default: the model's)")
    _add_image_options(image)
    _add_quantize_options(onnx)
    onnx.set_defaults(func=cmd_archive_onnx)

    inspect = command(kinds, "inspect", "print an archive's manifest, entries and sizes",
                      "mmsctl archive inspect model_store/efficientnet-lite0.mar")
    inspect.add_argument("archive", help="FILE.mar")
    inspect.add_argument("--json", action="store_true", help="print JSON (manifest, signature, entries)")
    inspect.set_defaults(func=cmd_archive_inspect)
