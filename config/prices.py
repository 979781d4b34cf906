"""The price table (``prices.json`` beside this file) and the hourly price of an instance.

The table is copied from the seed documents, each entry with its source; ``mmsctl bench``
uses it for cost per 100k requests, or ``--price-per-hour`` as given.
"""
import os
from dataclasses import dataclass
from typing import Optional

from mmsctl.errors import MmsctlError, UsageError
from mmsctl.files import read_json


class PriceError(MmsctlError):
    """The price table cannot be read or has the wrong shape."""


def prices_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.json")


def load_prices(path=None):
    path = path or prices_path()
    prices = read_json(path, PriceError, what="price table")
    for key in ("instances", "accelerators", "sources"):
        if not isinstance(prices.get(key), dict):
            raise PriceError("price table %s has no %r table" % (path, key))
    return prices


def _lookup(table, name):
    for key, entry in table.items():
        if name == key or name in entry.get("aliases", ()):
            return key, entry
    return None, None


@dataclass(frozen=True)
class Price:
    usd_per_hour: Optional[float]
    label: str
    source: str


def resolve_price(prices, instance=None, accelerator=None, price_per_hour=None):
    """The hourly price of an instance (+ accelerator), or ``price_per_hour`` as given.

    >>> p = resolve_price(load_prices(), "m5.large", "eia.medium")
    >>> (round(p.usd_per_hour, 3), p.label)
    (0.226, 'm5.large + eia1.medium')
    """
    if price_per_hour is not None:
        if price_per_hour <= 0:
            raise UsageError("--price-per-hour must be positive, got %r" % price_per_hour)
        label = " + ".join(x for x in (instance, accelerator) if x) or "custom"
        return Price(float(price_per_hour), label, "--price-per-hour %g" % price_per_hour)
    if not instance and not accelerator:
        return Price(None, "this machine", "no price: pass --instance TYPE or --price-per-hour USD")
    total, labels, sources = 0.0, [], []
    for kind, name, table in (("instance", instance, prices["instances"]),
                              ("accelerator", accelerator, prices["accelerators"])):
        if not name:
            continue
        key, entry = _lookup(table, name)
        if entry is None:
            missing = " ".join(prices.get("missing", {}).values())
            raise UsageError("no price for %s %s in %s (known: %s)%s; pass --price-per-hour USD instead"
                             % (kind, name, prices_path(), ", ".join(sorted(table)),
                                ": " + missing if missing and name.startswith("eia2") else ""))
        total += float(entry["usd_per_hour"])
        labels.append(key)
        source = prices["sources"].get(entry.get("source"), {})
        sources.append("%s $%s/h: %s (region %s)" % (key, entry["usd_per_hour"], source.get("file", "?"),
                                                     source.get("region", "?")))
    return Price(total, " + ".join(labels), "; ".join(sources))

