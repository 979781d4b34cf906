"""Open Inference Protocol v2 (KServe/Triton) JSON, as pure functions.

Request ``{"id"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}]}``,
answer ``{"model_name", "id"?, "outputs": [{"name", "shape", "datatype", "data"}]}``.
For a batchable model every tensor's first axis is the batch axis: :func:`decode_request`
checks a request against the archive's signature and cuts it into per-row items
(``{input name: array without the batch axis}``), the unit the engines batch;
:func:`encode_response` stacks the rows of one request back. A model that is not
batchable, or a request with an empty batch, goes through whole (``Request.whole``):
every dimension is checked against the declared one (symbols bind across inputs,
unknown ones are free) and :func:`encode_outputs` answers the engine's tensors as
they are. Any mistake is a :class:`BadRequest` (HTTP 400) naming the input and what
was expected.
"""
from collections import namedtuple

import numpy as np

from .engines import DATATYPES
from .errors import BadRequest

#: One decoded request: its rows (items for the engine), its id, the outputs it asks for, and
#: ``whole`` (``{input: array}``, else None) when it goes to the engine unsplit.
Request = namedtuple("Request", "items batch request_id output_names whole")

_KINDS = {"b": "BOOL", "i": "integer", "u": "integer", "f": "floating point"}


def datatype_of(array):
    """The v2 datatype of a numpy array.

    >>> datatype_of(np.zeros(2, np.int64))
    'INT64'
    >>> datatype_of(np.array([True]))
    'BOOL'
    """
    dtype = np.dtype(array.dtype)
    for name, candidate in DATATYPES.items():
        if np.dtype(candidate) == dtype:
            return name
    raise ValueError("no v2 datatype for numpy %s" % dtype)


def describe(spec):
    """``input_ids (INT64 [batch, 8])``: how an input is named in error messages.

    >>> describe({"name": "x", "datatype": "FP32", "shape": ["N", 3]})
    'x (FP32 [N, 3])'
    """
    return "%s (%s [%s])" % (spec["name"], spec.get("datatype", "FP32"),
                             ", ".join("?" if d is None else str(d) for d in spec["shape"]))


def _expected_inputs(specs):
    return "this model takes " + ", ".join(describe(s) for s in specs)


def _field(entry, key, position):
    if key not in entry:
        raise BadRequest("inputs[%d] has no %r: each input needs name, shape, datatype and data" % (position, key))
    return entry[key]


def _tensor(entry, spec, dims, batchable=True):
    """One request input -> an array of the declared type and shape; binds symbolic ``dims``.

    With ``batchable`` the first axis is the batch axis, shared by every input whatever
    the model names it and whatever size it fixes (requests are cut into rows).
    """
    name = spec["name"]
    datatype = str(entry["datatype"]).upper()
    expected_type = spec.get("datatype", "FP32")
    if datatype == "BYTES":
        raise BadRequest("input %r is BYTES, which this server does not carry: the model expects %s"
                         % (name, describe(spec)))
    if datatype != expected_type:
        raise BadRequest("input %r is %s but the model expects %s" % (name, datatype, describe(spec)))
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest("input %r: shape must be a list of non-negative integers, got %r" % (name, shape))
    if len(shape) != len(spec["shape"]):
        raise BadRequest("input %r has shape %s (rank %d) but the model expects %s (rank %d)"
                         % (name, shape, len(shape), describe(spec), len(spec["shape"])))
    if batchable and shape[0] < 1 and isinstance(spec["shape"][0], int):
        raise BadRequest("input %r: the batch axis (first dimension) must be at least 1, got %s" % (name, shape))
    for axis, (got, want) in enumerate(zip(shape, spec["shape"])):
        if axis == 0 and batchable:
            want = "__batch__"  # every input shares the batch axis, whatever the model names it
        if isinstance(want, int) and want > 0:
            if got != want:
                raise BadRequest("input %r has shape %s but the model expects %s: dimension %d must be %d"
                                 % (name, shape, describe(spec), axis, want))
        elif isinstance(want, str) and want:
            bound = dims.setdefault(want, (got, name))
            if bound[0] != got:
                label = "the batch size" if want == "__batch__" else "dimension %r" % want
                raise BadRequest("input %r has shape %s but input %r gave %s = %d: they must agree"
                                 % (name, shape, bound[1], label, bound[0]))
    data = entry["data"]
    if not shape and isinstance(data, (int, float, bool)):
        data = [data]  # a scalar may be given bare
    if not isinstance(data, list):
        raise BadRequest("input %r: data must be a JSON list (flat, row-major, or nested)" % name)
    try:
        raw = np.asarray(data)
    except (ValueError, OverflowError) as err:
        raise BadRequest("input %r: data is not a regular array: %s" % (name, err))
    dtype = np.dtype(DATATYPES[expected_type])
    if dtype.kind in "iu" and raw.dtype.kind in "fO":
        raw = _exact_integers(raw, data)
    if raw.size and not _compatible(raw.dtype, dtype):
        raise BadRequest("input %r is declared %s but its data holds %s values" % (
            name, datatype, _KINDS.get(raw.dtype.kind, "non-numeric")))
    count = int(np.prod(shape))
    if raw.size != count:
        raise BadRequest("input %r has %d values but shape %s needs %d" % (name, raw.size, shape, count))
    if raw.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            raise BadRequest("input %r is %s but holds %d, outside %d..%d" % (
                name, datatype, low if low < info.min else high, info.min, info.max))
    try:
        return raw.astype(dtype, casting="unsafe").reshape(shape)
    except (ValueError, OverflowError) as err:
        raise BadRequest("input %r: data cannot be read as %s: %s" % (name, datatype, err))


def _exact_integers(raw, data):
    """JSON integers numpy read as floats (0 and 2**64-1 together) or objects, kept exact.

    >>> _exact_integers(np.asarray([0, 2 ** 64 - 1]), [0, 2 ** 64 - 1]).tolist()
    [0, 18446744073709551615]
    >>> _exact_integers(np.asarray([1.5]), [1.5]).dtype.kind
    'f'
    """
    values = np.asarray(data, dtype=object).reshape(-1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return raw
    if values.size and (min(values) < np.iinfo(np.int64).min or max(values) > np.iinfo(np.uint64).max):
        return values.astype(object)  # refused below as holding non-numeric values
    kind = np.uint64 if values.size and min(values) >= 0 else np.int64
    try:
        return np.array(values.tolist(), dtype=kind).reshape(raw.shape)
    except OverflowError:  # negative values and values above 2**63 - 1 together
        return raw


def _compatible(raw, dtype):
    """Whether JSON values of numpy kind ``raw`` may fill a tensor of ``dtype``.

    >>> _compatible(np.dtype(np.int64), np.dtype(np.float32)), _compatible(np.dtype(np.float64), np.dtype(np.int64))
    (True, False)
    """
    if dtype.kind == "b":
        return raw.kind == "b"
    if dtype.kind in "iu":
        return raw.kind in "iu"
    if dtype.kind == "f":
        return raw.kind in "iuf"
    return False


def decode_request(body, specs, output_specs=(), batchable=True):
    """Check a decoded v2 JSON body against the signature; cut it into per-row items.

    A model that is not ``batchable``, or a request with an empty batch, is kept whole.

    >>> specs = [{"name": "ids", "shape": ["batch", 3], "datatype": "INT64"}]
    >>> request = decode_request({"inputs": [{"name": "ids", "shape": [2, 3], "datatype": "INT64",
    ...                                       "data": [1, 2, 3, 4, 5, 6]}]}, specs)
    >>> request.batch, request.items[1]["ids"].tolist()
    (2, [4, 5, 6])
    >>> try:
    ...     decode_request({"inputs": [{"name": "ids", "shape": [1, 4], "datatype": "INT64",
    ...                                 "data": [1, 2, 3, 4]}]}, specs)
    ... except BadRequest as err:
    ...     print(err.status, err.message)
    400 input 'ids' has shape [1, 4] but the model expects ids (INT64 [batch, 3]): dimension 1 must be 3
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest('expected Open Inference Protocol v2 JSON {"inputs": [{"name", "shape", "datatype", '
                         '"data"}]}: %s' % _expected_inputs(specs))
    by_name = {}
    for position, entry in enumerate(body["inputs"]):
        if not isinstance(entry, dict):
            raise BadRequest("inputs[%d] is not an object with name, shape, datatype and data" % position)
        for key in ("shape", "datatype", "data"):
            _field(entry, key, position)
        name = _field(entry, "name", position)
        if name in by_name:
            raise BadRequest("input %r is given twice" % name)
        by_name[name] = entry
    known = {spec["name"] for spec in specs}
    unknown = sorted(str(n) for n in by_name if n not in known)
    if unknown:
        raise BadRequest("unknown input %s: %s" % (", ".join(repr(n) for n in unknown), _expected_inputs(specs)))
    missing = [spec for spec in specs if spec["name"] not in by_name]
    if missing:
        raise BadRequest("missing input %s: %s" % (", ".join(repr(s["name"]) for s in missing),
                                                    _expected_inputs(specs)))
    dims = {}
    arrays = {spec["name"]: _tensor(by_name[spec["name"]], spec, dims, batchable) for spec in specs}
    outputs = _requested_outputs(body, output_specs)
    batch = dims["__batch__"][0] if batchable else None
    if not batch:
        return Request([], batch, body.get("id"), outputs, arrays)
    # np.array(..., copy) keeps a row of a 1-D tensor at rank 0 (ascontiguousarray would make it rank 1)
    items = [{name: np.array(array[row], copy=True, order="C") for name, array in arrays.items()}
             for row in range(batch)]
    return Request(items, batch, body.get("id"), outputs, None)


def _requested_outputs(body, output_specs):
    requested = body.get("outputs")
    if requested is None:
        return None
    names = [spec["name"] for spec in output_specs]
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        raise BadRequest('"outputs" must be a list of {"name": ...} objects naming outputs among %s'
                         % ", ".join(names))
    wanted = [o["name"] for o in requested]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise BadRequest("unknown output %s: this model gives %s" % (", ".join(repr(n) for n in unknown),
                                                                     ", ".join(names)))
    return wanted


def encode_response(model_name, rows, output_specs, request_id=None):
    """Stack one request's rows (``[{output: array without batch axis}]``) into a v2 answer.

    Each output is given the datatype its spec declares (whichever engine computed it),
    or keeps its own when the spec declares none.

    >>> rows = [{"y": np.array([1.5, 2.0], np.float32)}, {"y": np.array([3.0, 4.0], np.float32)}]
    >>> answer = encode_response("m", rows, [{"name": "y", "datatype": "FP32"}], request_id="7")
    >>> answer["model_name"], answer["id"], answer["outputs"]
    ('m', '7', [{'name': 'y', 'shape': [2, 2], 'datatype': 'FP32', 'data': [1.5, 2.0, 3.0, 4.0]}])
    >>> encode_response("m", [{"n": np.float32(3.0)}], [{"name": "n", "datatype": "INT64"}])["outputs"][0]["data"]
    [3]
    """
    stacked = {spec["name"]: np.stack([np.asarray(row[spec["name"]]) for row in rows]) for spec in output_specs}
    return encode_outputs(model_name, stacked, output_specs, request_id)


def encode_outputs(model_name, values, output_specs, request_id=None):
    """A v2 answer of whole output tensors ``{output: array}`` (any rank, 0 and empty included).

    >>> encode_outputs("m", {"s": np.float64(2.5), "e": np.zeros((0, 2), np.uint16)},
    ...                [{"name": "s", "datatype": "FP64"}, {"name": "e", "datatype": "UINT16"}])["outputs"][0]
    {'name': 's', 'shape': [], 'datatype': 'FP64', 'data': [2.5]}
    """
    outputs = []
    for spec in output_specs:
        name = spec["name"]
        array = np.asarray(values[name])
        if spec.get("datatype") in DATATYPES:
            array = array.astype(DATATYPES[spec["datatype"]], copy=False)
        outputs.append({"name": name, "shape": list(array.shape), "datatype": datatype_of(array),
                        "data": array.reshape(-1).tolist()})
    answer = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        answer["id"] = request_id
    return answer


def shape_key(item):
    """What decides whether two items can share a forward pass: each input's shape and type.

    >>> shape_key({"a": np.zeros((2, 3)), "b": np.zeros(4, np.int64)})
    (('a', (2, 3), 'float64'), ('b', (4,), 'int64'))
    """
    return tuple((name, tuple(item[name].shape), item[name].dtype.name) for name in sorted(item))


def shape_groups(items):
    """Positions of ``items`` grouped by :func:`shape_key`, groups in order of first appearance.

    Items of one group stack on the batch axis; a batch mixing sequence lengths runs one
    forward pass per length instead of failing.

    >>> shape_groups([{"a": np.zeros(3)}, {"a": np.zeros(4)}, {"a": np.zeros(3)}])
    [[0, 2], [1]]
    """
    groups = {}
    for position, item in enumerate(items):
        groups.setdefault(shape_key(item), []).append(position)
    return list(groups.values())
