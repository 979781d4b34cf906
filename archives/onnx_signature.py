"""What an ONNX graph takes and gives, as the archive's signature records it: each input's and output's
name, v2 datatype and dimensions (ints fixed, strings named symbols, None unknown), and the operator sets.

>>> sorted(set(ONNX_DATATYPES.values())) == sorted(NUMPY_TYPES)
True
"""
import numpy as np

from .errors import InvalidInput

#: ONNX element type name -> v2 datatype (the types the handlers decode and encode).
#: Not carried: STRING (v2 BYTES), BFLOAT16 and the float8 types (no numpy type), complex.
ONNX_DATATYPES = {
    "FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "INT64": "INT64", "INT32": "INT32",
    "INT16": "INT16", "INT8": "INT8", "UINT64": "UINT64", "UINT32": "UINT32", "UINT16": "UINT16",
    "UINT8": "UINT8", "BOOL": "BOOL",
}

NUMPY_TYPES = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
    "INT16": np.int16, "INT8": np.int8, "UINT64": np.uint64, "UINT32": np.uint32, "UINT16": np.uint16,
    "UINT8": np.uint8, "BOOL": np.bool_,
}


def onnx_module():
    try:
        import onnx
    except ImportError:
        raise InvalidInput("the onnx package is not installed: run scripts/bootstrap.sh (requirements/runtime.txt)")
    return onnx


def _dims(shape):
    """ONNX dimensions -> ints (fixed), strings (named symbols) or None (unknown)."""
    dims = []
    for dim in shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def tensor_spec(value, role, path):
    """``{"name", "shape", "datatype"}`` of a graph input or output; refuses what cannot be served."""
    onnx = onnx_module()
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InvalidInput("%s: %s %r is a %s, not a tensor: mmsctl serves tensor inputs and outputs only"
                           % (path, role, value.name, kind or "value of unknown type"))
    tensor = value.type.tensor_type
    type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
    if type_name not in ONNX_DATATYPES:
        raise InvalidInput("%s: %s %r has element type %s, which the tensor protocol does not carry here "
                           "(supported: %s)" % (path, role, value.name, type_name, ", ".join(ONNX_DATATYPES)))
    shape = _dims(tensor.shape) if tensor.HasField("shape") else None
    return {"name": value.name, "shape": shape, "datatype": ONNX_DATATYPES[type_name]}


def read_signature(model, path):
    """(inputs, outputs) specs of a checked model; every input needs a declared rank (0 for a scalar)."""
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [tensor_spec(v, "input", path) for v in model.graph.input if v.name not in weights]
    outputs = [tensor_spec(v, "output", path) for v in model.graph.output]
    if not inputs:
        raise InvalidInput("%s has no input that is not a weight: nothing to feed" % path)
    for spec in inputs:
        if spec["shape"] is None:
            raise InvalidInput("%s: input %r has no declared shape: give it one (its rank at least, symbolic "
                               "dimensions are fine) so that requests can be checked" % (path, spec["name"]))
    return inputs, outputs


def opsets(model):
    """``ai.onnx 13, com.example 1``: the operator sets a model imports."""
    return ", ".join("%s %d" % (o.domain or "ai.onnx", o.version) for o in model.opset_import)
