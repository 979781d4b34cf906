"""Typed errors of the handlers, each carrying the HTTP status it maps to.

One place (``BaseHandler.handle``) turns them into per-request statuses.
"""


class HandlerError(Exception):
    """A request the handler cannot answer; ``status`` is the HTTP code to send."""

    status = 500

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def to_json(self):
        return {"code": self.status, "type": type(self).__name__, "message": self.message}


class BadRequest(HandlerError):
    """The request body cannot be used (empty, undecodable, wrong shape...)."""

    status = 400


class UnsupportedMediaType(HandlerError):
    """The body is of a kind this model does not take (text sent to an image model...)."""

    status = 415


class PayloadTooLarge(HandlerError):
    """The body, or the image it declares, is larger than the handler accepts."""

    status = 413


class ModelLoadFailure(BaseException):
    """A model that cannot be loaded.

    Derives from BaseException on purpose: MMS 1.1.11 wraps a class handler's
    ``initialize`` in ``except Exception`` and logs it, then keeps serving a broken
    model. A BaseException passes that handler, so the worker stops with the
    message and the frontend reports the load as failed.
    """

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def first_line(err):
    r"""The first line of an exception's message, for one-line errors (MXNet's carry a C++ trace below).

    >>> first_line(ValueError("bad shape\nStack trace: ...")), first_line(KeyError())
    ('bad shape', 'KeyError')
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
