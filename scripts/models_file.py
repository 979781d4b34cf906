"""The models file of ``mmsctl serve --models-file models.toml``: several models, each with its settings.

One TOML table per model, named by the model (MMS's name pattern)::

    [efficientnet-lite0]
    archive = "efficientnet-lite0.mar"   # a file in the model store, as with --models NAME=FILE
    workers = 1                          # or: share = 0.5 (that fraction of the server's vCPUs)
    batch_size = 4                       # server-side batch (MMS default 1)
    max_batch_delay_ms = 20              # ms MMS waits to fill a batch (MMS default 100)
    response_timeout_s = 30              # seconds a worker may take per batch, and per model load
    engine = "onnxruntime"               # auto, mxnet or onnxruntime (MMSCTL_ENGINE MODEL=ENGINE)

Everything is checked before anything starts: unknown keys, values of the wrong type
or range, a missing archive, two models with one name. Each refusal is one line that
names the file, the model, the key and the reason.

MMS 1.1.11 gives models loaded at its start-up batch size 1 whatever is asked (MMS
issue 770), so ``mmsctl serve`` registers every model through the management API
once the server answers, with a JSON body: there ``response_timeout`` is seconds,
whereas the query-string form reads it as minutes (RegisterModelRequest multiplies
it by 60).
"""
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, replace
from typing import Optional

from mmsctl.config import profiles
from mmsctl.config.profiles import ModelRequest
from mmsctl.handlers.contract import ENGINE_ENV

from .errors import UsageError
from .files import read_regular

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
ENGINES = ("auto", "mxnet", "onnxruntime")
#: key -> (kind, lowest, highest, what it means)
INTEGER_KEYS = {
    "workers": (1, 256, "workers of the model"),
    "batch_size": (1, 1024, "requests MMS batches for one handler call"),
    "max_batch_delay_ms": (0, 600000, "milliseconds MMS waits to fill a batch"),
    "response_timeout_s": (1, 86400, "seconds a worker may take per batch (and per model load)"),
}
KEYS = ("archive",) + tuple(INTEGER_KEYS) + ("share", "engine")


class ModelsFileError(UsageError):
    """A models file (or --models pair) that cannot be served as written."""


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve and its settings (None: the profile's or MMS's default)."""

    name: str
    archive: str
    workers: Optional[int] = None
    share: Optional[float] = None
    batch_size: Optional[int] = None
    max_batch_delay_ms: Optional[int] = None
    response_timeout_s: Optional[int] = None
    engine: Optional[str] = None

    def request(self):
        """What this model asks of the server's core budget."""
        return ModelRequest(self.name, workers=self.workers, share=self.share)

    def settings(self):
        return {key: value for key, value in asdict(self).items() if value is not None and key != "name"}


def _where(source, name=None, key=None):
    return ": ".join([source] + (["model %r" % name] if name is not None else [])
                     + (["key %r" % key] if key is not None else []))


def _check_value(source, name, key, value):
    def fail(reason):
        raise ModelsFileError("%s: %s" % (_where(source, name, key), reason))

    if key == "archive":
        if not isinstance(value, str) or not value.strip():
            fail("must be the archive's file name in the model store (a string), not %r" % (value,))
        if "://" in value:
            fail("%r is a URL: copy the archive into the model store and name the file" % value)
        return value
    if key == "engine":
        if not isinstance(value, str) or value.strip().lower() not in ENGINES:
            fail("must be one of %s, not %r" % (", ".join(ENGINES), value))
        return value.strip().lower()
    if key == "share":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 < value <= 1:
            fail("must be a fraction of the server's vCPUs above 0 and at most 1 (0.5 = half), not %r" % (value,))
        return float(value)
    low, high, meaning = INTEGER_KEYS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail("must be a whole number from %d to %d (%s), not %r" % (low, high, meaning, value))
    return value


def spec_from_table(source, name, table):
    """A checked ModelSpec from one model's table (``source`` names the file in messages)."""
    if not MODEL_NAME.match(name):
        raise ModelsFileError("%s: the name must match MMS's ^[A-Za-z0-9][A-Za-z0-9_.-]*$"
                              % _where(source, name))
    if not isinstance(table, dict):
        raise ModelsFileError("%s: must be a table ([%s] with archive = \"FILE.mar\" under it), not %r"
                              % (_where(source, name), name, table))
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ModelsFileError("%s: unknown key (the keys are %s)" % (_where(source, name, unknown[0]), ", ".join(KEYS)))
    if "archive" not in table:
        raise ModelsFileError("%s: missing: every model needs archive = \"FILE.mar\"" % _where(source, name, "archive"))
    if "workers" in table and "share" in table:
        raise ModelsFileError("%s: give workers or share, not both" % _where(source, name, "share"))
    values = {key: _check_value(source, name, key, value) for key, value in table.items()}
    return ModelSpec(name=name, **values)


def load(path):
    """The models of a TOML models file, in the file's order; refuses what cannot be served."""
    source = str(path)
    try:
        text = read_regular(path).decode("utf-8")
    except OSError as err:
        raise ModelsFileError("%s: cannot read the models file: %s" % (source, err.strerror or err))
    except UnicodeDecodeError as err:
        raise ModelsFileError("%s: not UTF-8 text (%s)" % (source, err.reason))
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        reason = str(err)
        if "Cannot declare" in reason or "Cannot overwrite" in reason:
            reason = "a model (table) is declared twice, two models cannot share a name: " + reason
        raise ModelsFileError("%s: not valid TOML: %s" % (source, reason))
    if not document:
        raise ModelsFileError("%s: names no model: add one table per model, e.g. [NAME] with "
                              "archive = \"NAME.mar\"" % source)
    specs = [spec_from_table(source, name, table) for name, table in document.items()]
    shares = [spec for spec in specs if spec.share is not None]
    if sum(spec.share for spec in shares) > 1 + 1e-9:
        raise ModelsFileError("%s: key 'share': the shares of %s add up to %g, more than the whole server (1)" % (
            source, ", ".join(spec.name for spec in shares), sum(spec.share for spec in shares)))
    return specs


def from_pairs(pairs, source="--models"):
    """ModelSpecs for ``--models NAME=FILE`` pairs (no settings: the profile's defaults)."""
    return [spec_from_table(source, name, {"archive": path}) for name, path in pairs]


def combine(*groups):
    """One list from several sources (a file, --models pairs); a name given twice is refused."""
    seen, combined = {}, []
    for source, specs in groups:
        for spec in specs:
            if spec.name in seen:
                raise ModelsFileError("%s: model %r is also given by %s: two models cannot share a name"
                                      % (source, spec.name, seen[spec.name]))
            seen[spec.name] = source
            combined.append(spec)
    return combined


def check_archives(specs, model_store, source):
    """Refuse, before anything starts, an archive that is not a file in the model store."""
    for spec in specs:
        full = spec.archive if os.path.isabs(spec.archive) else os.path.join(model_store, spec.archive)
        if not os.path.isfile(full):
            raise ModelsFileError("%s: %s is not a file in the model store %s"
                                  % (_where(source, spec.name, "archive"), spec.archive, model_store))


def engine_pairs(specs):
    """``MMSCTL_ENGINE`` pairs for the models that name an engine (None when none does)."""
    pairs = ["%s=%s" % (spec.name, spec.engine) for spec in specs if spec.engine]
    return ",".join(pairs) or None


def merge_engine_variable(current, pairs):
    """``MMSCTL_ENGINE`` from the server's own value and the models' pairs (the models' win).

    >>> merge_engine_variable("onnxruntime,a=mxnet", "a=onnxruntime,b=mxnet")
    'onnxruntime,a=onnxruntime,b=mxnet'
    >>> merge_engine_variable(None, "a=mxnet")
    'a=mxnet'
    """
    if not pairs:
        return current
    named = {entry.split("=", 1)[0].strip() for entry in pairs.split(",")}
    kept = [entry.strip() for entry in (current or "").split(",")
            if entry.strip() and entry.split("=", 1)[0].strip() not in named]
    return ",".join(kept + [pairs])


def model_specs(models):
    """ModelSpecs from ``{name: archive}`` or a list of ModelSpec (a models file)."""
    if isinstance(models, dict):
        return [ModelSpec(name=name, archive=path) for name, path in models.items()]
    return list(models or ())


def planned(profile, specs):
    """``profile`` with a plan for ``specs`` over one core budget, and the models' engines.

    A profile planned already (``mmsctl serve`` refuses a plan over the budget unless
    --oversubscribe) is kept; otherwise the library plans and tolerates oversubscription.
    """
    if specs and not profile.plan:
        profile, warning = profiles.plan_models(profile, [spec.request() for spec in specs], oversubscribe=True)
        if warning:
            profiles.logger.warning(warning)
    pairs = engine_pairs(specs)
    if pairs:
        profile = replace(profile, environment={**profile.environment, ENGINE_ENV: pairs})
    return profile


def model_settings(profile, specs):
    """{model: settings} as registered: the models file's keys plus the plan's workers and threads."""
    plans = {plan.name: plan for plan in profile.plan}
    settings = {}
    for spec in specs:
        entry = spec.settings()
        plan = plans.get(spec.name)
        entry["workers"] = plan.workers if plan else profile.workers
        if plan:
            entry["threads"] = plan.threads
        settings[spec.name] = entry
    return settings
