"""Whether a tensor model is batchable, decided once at build time and kept in ``signature.json``.

A model is *batchable* when its first axis really is a batch axis:

* every input has one (no rank-0 input) and all inputs agree on it (the same symbol,
  all unknown, or the same fixed size);
* every output keeps it: a forward pass on a batch of B rows answers B rows;
* rows are independent: each row run on its own answers what it answered inside the
  batch (dynamic axis), or, when the model fixes the batch size, replacing one row by
  zeros (padding) or rotating the rows (other requests) moves no other row.

Only then may the handler cut requests into rows and stack rows of several requests
into one forward pass. Any other model is served as it is: each request's tensors
go to the engine unchanged (``{"batchable": false, "reason": ...}``), which is how
Triton (``max_batch_size: 0``) and KServe serve such models.

Everything here is pure except the ``run`` callable (``{input: array} -> {output: array}``)
given by the builder, which raises the builder's errors when a forward pass fails.
"""
import numpy as np

from .errors import InvalidInput

#: Rows run alone must answer as inside the batch within this (absolute and relative).
ROW_TOLERANCE = 1e-4

#: Size given to a symbolic or unknown dimension in trial forward passes.
FREE_SIZE = 3

#: Rows in the trial batch when the batch axis is not fixed.
TRIAL_BATCH = 2


def _first(spec):
    return spec["shape"][0]


def example_shapes(inputs, batch=None):
    """Concrete shapes for a trial pass: fixed dims kept, each symbol one size, unknown dims 3.

    With ``batch`` the first axis of every input gets that size.

    >>> example_shapes([{"name": "a", "shape": ["M", "K"]}, {"name": "b", "shape": ["K", 5]},
    ...                 {"name": "s", "shape": []}])
    {'a': [3, 3], 'b': [3, 5], 's': []}
    >>> example_shapes([{"name": "x", "shape": ["N", None, 4]}], batch=2)
    {'x': [2, 3, 4]}
    """
    sizes = {}
    if batch is not None:
        sizes.update({_first(spec): batch for spec in inputs if isinstance(_first(spec), str)})
    shapes = {}
    for spec in inputs:
        shape = []
        for axis, dim in enumerate(spec["shape"]):
            if isinstance(dim, int):
                shape.append(dim)
            elif axis == 0 and batch is not None:
                shape.append(batch)
            elif isinstance(dim, str):
                shape.append(sizes.setdefault(dim, FREE_SIZE))
            else:
                shape.append(FREE_SIZE)
        shapes[spec["name"]] = shape
    return shapes


def make_feeds(inputs, shapes, numpy_types, seed=None):
    """Zeros of ``shapes``, or with ``seed`` standard normal floats, random 0/1 integers and booleans."""
    rng = np.random.default_rng(seed) if seed is not None else None
    feeds = {}
    for spec in inputs:
        dtype = numpy_types[spec["datatype"]]
        size = shapes[spec["name"]]
        if rng is None:
            feeds[spec["name"]] = np.zeros(size, dtype)
        elif np.issubdtype(dtype, np.floating):
            feeds[spec["name"]] = rng.standard_normal(size).astype(dtype)
        else:
            feeds[spec["name"]] = rng.integers(0, 2, size).astype(dtype)
    return feeds


def input_reason(inputs):
    """Why the inputs have no shared first (batch) axis, or None.

    >>> input_reason([{"name": "x", "shape": ["N", 3]}, {"name": "scale", "shape": [3]}])
    'inputs disagree on their first axis: x N, scale 3'
    >>> input_reason([{"name": "s", "shape": []}])
    "input 's' is a scalar (rank 0)"
    >>> input_reason([{"name": "a", "shape": ["N", 3]}, {"name": "b", "shape": ["N"]}]) is None
    True
    """
    for spec in inputs:
        if not spec["shape"]:
            return "input %r is a scalar (rank 0)" % spec["name"]
    if len({repr(_first(spec)) for spec in inputs}) > 1:
        return "inputs disagree on their first axis: %s" % ", ".join(
            "%s %s" % (spec["name"], "?" if _first(spec) is None else _first(spec)) for spec in inputs)
    return None


def output_reason(values, batch):
    """Why the outputs of a ``batch``-row forward pass do not all have ``batch`` rows, or None."""
    for name, value in values.items():
        value = np.asarray(value)
        if value.ndim == 0:
            return "output %r is a scalar for a batch of %d" % (name, batch)
        if value.shape[0] != batch:
            return "output %r has shape %s for a batch of %d: its first axis is not the batch" % (
                name, list(value.shape), batch)
    return None


def difference(expected, got):
    """How two answers to the same rows differ (shape or values beyond ROW_TOLERANCE), or None.

    >>> difference(np.array([1.0, 2.0]), np.array([1.0, 2.00001])) is None
    True
    >>> difference(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    'by up to 1'
    >>> difference(np.zeros((1, 2)), np.zeros(2))
    'in shape: [1, 2] against [2]'
    """
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return "in shape: %s against %s" % (list(expected.shape), list(got.shape))
    if expected.dtype.kind in "biu" and got.dtype.kind in "biu":
        return None if np.array_equal(expected, got) else "in value"
    want, have = expected.astype(np.float64), got.astype(np.float64)
    if np.allclose(have, want, rtol=ROW_TOLERANCE, atol=ROW_TOLERANCE, equal_nan=True):
        return None
    gap = np.abs(have - want)
    return "by up to %.3g" % float(np.nanmax(gap)) if np.isfinite(gap).any() else "in value"


def rows_reason(inputs, run, batch, fixed, numpy_types):
    """Why rows of a batch are not independent, or None (random inputs, seeded)."""
    feeds = make_feeds(inputs, example_shapes(inputs, batch), numpy_types, seed=0)
    try:
        return _rows_reason(feeds, run, batch, fixed)
    except InvalidInput as err:
        return "a forward pass on random rows %s: rows are not known to be independent" % getattr(
            err, "detail", err)


def _rows_reason(feeds, run, batch, fixed):
    batched = run(feeds)
    if not fixed:
        for row in range(batch):
            alone = run({name: value[row:row + 1] for name, value in feeds.items()})
            for name, value in batched.items():
                gap = difference(value[row:row + 1], alone[name])
                if gap:
                    return ("output %r of row %d run alone differs from the same row in a batch of %d %s: "
                            "rows are not independent" % (name, row, batch, gap))
        return None
    if batch == 1:
        return None
    padded = run({name: np.concatenate([np.zeros_like(value[:1]), value[1:]]) for name, value in feeds.items()})
    rolled = run({name: np.roll(value, 1, axis=0) for name, value in feeds.items()})
    for name, value in batched.items():
        gap = difference(value[1:], padded[name][1:])
        if gap:
            return ("output %r of rows 1-%d moves %s when row 0 is replaced by zeros: rows are not independent"
                    % (name, batch - 1, gap))
        gap = difference(np.roll(value, 1, axis=0), rolled[name])
        if gap:
            return "output %r does not follow its rows when they are reordered (%s): rows are not independent" % (
                name, gap)
    return None


def classify(inputs, run, numpy_types):
    """``{"batchable", "reason"?, "example_shapes"}`` of a tensor model.

    ``example_shapes`` are the input shapes of a zero forward pass that worked (the
    worker's warm-up for a model served as it is). A forward pass that fails on the
    example shapes refuses the model (``run`` raises).
    """
    reason = input_reason(inputs)
    if reason is None:
        first = _first(inputs[0])
        fixed = isinstance(first, int)
        batch = first if fixed else TRIAL_BATCH
        shapes = example_shapes(inputs, batch)
        reason = output_reason(run(make_feeds(inputs, shapes, numpy_types)), batch)
        if reason is None:
            reason = rows_reason(inputs, run, batch, fixed, numpy_types)
        if reason is None:
            return {"batchable": True, "example_shapes": shapes}
    else:
        shapes = example_shapes(inputs)
        run(make_feeds(inputs, shapes, numpy_types))
    return {"batchable": False, "reason": reason, "example_shapes": shapes}


def describe(batching):
    """One line for ``archive inspect``: batchable or not, and why.

    >>> describe({"batchable": False, "reason": "input 's' is a scalar (rank 0)"})
    "not batchable, because input 's' is a scalar (rank 0): each request runs as it is, batch_size 1 only"
    >>> describe(None)
    'batchable on the first axis (requests are cut into rows and batched)'
    """
    if batching is None or batching.get("batchable", True):
        return "batchable on the first axis (requests are cut into rows and batched)"
    return "not batchable, because %s: each request runs as it is, batch_size 1 only" % batching.get(
        "reason", "the archive says so")
