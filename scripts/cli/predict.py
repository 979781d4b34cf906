"""``mmsctl predict`` and ``mmsctl quickstart``: the inference API from the command line."""
import os

from .. import quickstart
from ..client import predict
from .common import command, print_json


def cmd_predict(args):
    print_json(predict(args.url, args.model, args.files, timeout=args.timeout, verify=args.cacert or True))


def cmd_quickstart(args):
    return quickstart.run(args.workdir, inference_port=args.inference_port,
                          management_port=args.management_port, image=args.image)


def add_commands(sub):
    pred = command(sub, "predict", "classify image files (several go in one multipart request)",
                   "mmsctl predict --model efficientnet-lite0 chelsea.png")
    pred.add_argument("files", nargs="+", metavar="IMAGE")
    pred.add_argument("--model", required=True)
    pred.add_argument("--url", default=os.environ.get("MMSCTL_INFERENCE_URL", "http://127.0.0.1:8080"),
                      help="inference API (default %(default)s, or $MMSCTL_INFERENCE_URL)")
    pred.add_argument("--timeout", type=float, default=120.0)
    pred.add_argument("--cacert", metavar="PEM", help="certificate (or CA bundle) to trust for an https --url")
    pred.set_defaults(func=cmd_predict)

    quick = command(sub, "quickstart",
                    "build the default archive, serve it, scale to 1 worker, classify the bundled cat",
                    "mmsctl quickstart")
    quick.add_argument("--workdir", help="folder for the model store and server state (default: quickstart/ "
                                          "under $MMSCTL_CACHE_DIR, $XDG_CACHE_HOME/mmsctl or ~/.cache/mmsctl)")
    quick.add_argument("--inference-port", type=int, default=8080)
    quick.add_argument("--management-port", type=int, default=8081)
    quick.add_argument("--image", help="image to classify (default: scikit-image's chelsea.png, CC0)")
    quick.set_defaults(func=cmd_quickstart)
