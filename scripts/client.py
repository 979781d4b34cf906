"""Inference API client: send images to ``/predictions/NAME`` and read the answer."""
import os

import requests

from .errors import MmsctlError
from .files import read_regular


class PredictionError(MmsctlError):
    """The inference API refused the request or could not be reached."""

    def __init__(self, message, status=None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


def _read(path):
    try:
        return read_regular(path)
    except OSError as err:
        raise PredictionError("cannot read %s: %s" % (path, err.strerror))


def predict(inference_url, model, files, timeout=120.0, session=None, verify=True):
    """Classify one file (raw body) or several (one multipart request, parts image0..N).

    Returns the decoded JSON answer. MMS keeps only the last of several form parts
    sharing a name, so each part gets its own name. ``verify`` is requests' TLS
    check: True, or the CA/certificate file of an https server.
    """
    url = "%s/predictions/%s" % (inference_url.rstrip("/"), model)
    http = session or requests
    try:
        if len(files) == 1:
            response = http.post(url, data=_read(files[0]), timeout=timeout, verify=verify,
                                 headers={"Content-Type": "application/octet-stream"})
        else:
            parts = [("image%d" % i, (os.path.basename(f), _read(f), "application/octet-stream"))
                     for i, f in enumerate(files)]
            response = http.post(url, files=parts, timeout=timeout, verify=verify)
    except requests.exceptions.SSLError as err:
        raise PredictionError("TLS with %s failed (pass the server's certificate with --cacert): %s" % (url, err))
    except requests.ConnectionError as err:
        text = str(err).lower()
        if "reset" in text or "aborted" in text or "broken pipe" in text:
            raise PredictionError("%s closed the connection: the body is probably larger than the server's "
                                  "max_request_size" % url)
        raise PredictionError("inference API at %s is not reachable (is the server running?)" % inference_url)
    except requests.Timeout:
        raise PredictionError("%s did not answer within %.0f s" % (url, timeout))
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code == 413 and not body:  # refused by the frontend before any handler saw it
        raise PredictionError("model %s at %s answered 413: the body is larger than the server's max_request_size"
                              % (model, inference_url), status=413, body=body)
    if response.status_code != 200:
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        raise PredictionError("model %s at %s answered %d: %s" % (model, inference_url, response.status_code, message),
                              status=response.status_code, body=body)
    return body
