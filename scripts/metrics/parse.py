"""Parse the lines of the logs written with mmsctl's log4j2 layouts (see logconfig).

Every parser returns a small tuple, or None for a line it cannot read (the
exporter counts those and goes on).
"""
import re
from collections import namedtuple

Access = namedtuple("Access", "time_ms method path model status duration_ms")
Metric = namedtuple("Metric", "time_ms name unit value dimensions")
StateChange = namedtuple("StateChange", "time_ms port model old new")

#: ``1764640000123 /127.0.0.1:50412 "POST /predictions/m HTTP/1.1" 200 12``
_ACCESS = re.compile(r'^(\d{10,16}) (\S+) "(\S+) (\S+) [^"]*" (\d{3}) (\d+)$')
#: ``1764640000123 PredictionTime.Milliseconds:70.95|#ModelName:m,Level:Model|#hostname:h,...``
_METRIC = re.compile(r"^(\d{10,16}) ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+):([-+0-9.eE]+|NaN)\|#([^|]*)\|#(.*)$")
#: ``1764640000123 W-9000-m State change WORKER_STARTED -> WORKER_MODEL_LOADED``
_STATE = re.compile(r"^(\d{10,16}) W-(\d+)-(\S+) State change (\S+) -> (\S+)$")
#: MMS's model name pattern
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")


def prediction_model(path):
    """The model an inference request names, or None: ``/predictions/NAME[/VERSION]`` or MMS's
    legacy ``/NAME/predict``.

    >>> prediction_model("/predictions/resnet-18?x=1"), prediction_model("/m/predict"), prediction_model("/ping")
    ('resnet-18', 'm', None)
    """
    parts = path.split("?", 1)[0].split("/")
    if len(parts) >= 3 and parts[1] == "predictions":
        name = parts[2]
    elif len(parts) == 3 and parts[2] == "predict":
        name = parts[1]
    else:
        return None
    return name if _MODEL_NAME.match(name) else None


def access(line):
    """An access log line, or None.

    >>> access('1764640000123 /127.0.0.1:5 "POST /predictions/m HTTP/1.1" 200 12')
    Access(time_ms=1764640000123, method='POST', path='/predictions/m', model='m', status=200, duration_ms=12)
    """
    found = _ACCESS.match(line.rstrip("\r"))
    if not found:
        return None
    time_ms, _client, method, path, status, duration = found.groups()
    return Access(int(time_ms), method, path, prediction_model(path), int(status), int(duration))


def metric(line):
    """A model_metrics.log or mms_metrics.log line, or None.

    >>> m = metric("1764640000123 PredictionTime.Milliseconds:70.95|#ModelName:m,Level:Model|#hostname:h")
    >>> m.name, m.unit, m.value, m.dimensions["ModelName"]
    ('PredictionTime', 'Milliseconds', 70.95, 'm')
    """
    found = _METRIC.match(line.rstrip("\r"))
    if not found:
        return None
    time_ms, name, unit, value, dims, _host = found.groups()
    dimensions = {}
    for pair in dims.split(","):
        key, sep, val = pair.partition(":")
        if sep:
            dimensions[key.strip()] = val.strip()
    try:
        number = float(value)
    except ValueError:
        return None
    return Metric(int(time_ms), name, unit, number, dimensions)


def state_change(line):
    """A worker_state.log line, or None.

    >>> state_change("1764640000123 W-9000-m State change null -> WORKER_STARTED")
    StateChange(time_ms=1764640000123, port=9000, model='m', old=None, new='WORKER_STARTED')
    """
    found = _STATE.match(line.rstrip("\r"))
    if not found:
        return None
    time_ms, port, model, old, new = found.groups()
    return StateChange(int(time_ms), int(port), model, None if old == "null" else old, new)
