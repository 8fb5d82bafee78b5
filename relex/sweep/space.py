"""Sampled axes of a job file's space: ``uniform``, ``loguniform``, ``randint``, ``choice``.

A space value is a constant, a ``grid([...])`` axis, or one of these distributions::

    space=dict(lr=loguniform(1e-5, 1e-3), warmup_ratio=uniform(0.0, 0.3, q=0.05),
               epochs=randint(2, 6), loss=choice(["ce", "focal"]), head=grid(["cls", "marker"]))

The grid is crossed with the samples: ``Sweep(num_samples=N)`` draws N configurations per grid
point. Bounds follow Ray Tune: ``uniform`` and ``loguniform`` draw from ``[low, high]``,
``randint(a, b)`` from ``a`` to ``b - 1``; ``q`` rounds ``uniform`` to multiples of ``q``.

Every distribution is checked against the typed config before Ray starts
(:func:`check_distributions`): the field kind fits the distribution (floats take ``uniform`` /
``loguniform``, integers ``randint``, anything ``choice``), and every bound is a valid value of
its field. The fields that shape the features built once before the trials (backbone, marker,
max_length, the tiny backbone's sizes) take ``grid([...])`` instead.

Sampling is Ray Tune's own (:meth:`Distribution.sample` draws from the matching
``ray.tune`` domain with a seeded random state); this module imports Ray only when it samples,
so job files load without it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from relex.config import TrialConfig
from relex.errors import RelexError

# built once by the driver's pre-flight, before any trial: a searcher cannot pick them per trial
FEATURE_FIELDS = ("backbone", "marker", "max_length", "tiny_hidden", "tiny_layers",
                  "tiny_heads", "tiny_vocab")
_FIELD_TYPES = {f.name: (f.type if isinstance(f.type, str) else f.type.__name__)
                for f in dataclasses.fields(TrialConfig)}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RelexError(f"{what}: bounds must be finite numbers, got {value!r}")
    return value


class Distribution:
    """A sampled axis. ``kinds``: the config field types it may set."""

    kinds: tuple[str, ...] = ()

    def bounds(self) -> list[Any]:
        """The extreme values it can produce: each must be a valid value of its field."""
        raise NotImplementedError

    def tune_domain(self):
        """The matching ``ray.tune`` search-space domain."""
        raise NotImplementedError

    def sample(self, random_state) -> Any:
        """One draw from the Ray Tune domain, as a plain Python value."""
        value = self.tune_domain().sample(random_state=random_state)
        return self.tidy(value.item() if hasattr(value, "item") else value)

    def tidy(self, value: Any) -> Any:
        """A drawn value as the config keeps it (a searcher's draws pass through here too)."""
        return value

    def is_log(self) -> bool:
        return False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this distribution can draw."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """What ``job.json`` records of this axis (the searched space is part of what ran)."""
        return {"kind": type(self).__name__.lower(),
                **{k: v for k, v in vars(self).items() if v is not None}}


class Uniform(Distribution):
    kinds = ("float",)

    def __init__(self, low: float, high: float, q: float | None = None):
        name = f"{type(self).__name__.lower()}({low!r}, {high!r})"
        self.low, self.high = _number(low, name), _number(high, name)
        if not self.low < self.high:
            raise RelexError(f"{name}: low must be below high")
        self.q = None
        if q is not None:
            self.q = _number(q, name)
            if self.q <= 0 or not (_multiple(self.low, self.q) and _multiple(self.high, self.q)):
                raise RelexError(f"{name}: q={q!r} must be > 0 with both bounds multiples of it")

    def bounds(self) -> list[Any]:
        return [float(self.low), float(self.high)]

    def contains(self, value: Any) -> bool:
        return (isinstance(value, (int, float)) and self.low <= value <= self.high
                and (self.q is None or _multiple(value - self.low, self.q)))

    def tune_domain(self):
        from ray import tune

        if self.q is not None:
            return tune.quniform(self.low, self.high, self.q)
        return tune.uniform(self.low, self.high)

    def tidy(self, value: Any) -> Any:
        return value if self.q is None else float(f"{value:.12g}")  # 0.15, not 0.15000000000000002

    def __repr__(self) -> str:
        return f"uniform({self.low!r}, {self.high!r}{'' if self.q is None else f', q={self.q!r}'})"


class LogUniform(Uniform):
    def __init__(self, low: float, high: float):
        super().__init__(low, high)
        if self.low <= 0:
            raise RelexError(f"loguniform({low!r}, {high!r}): bounds must be > 0 "
                             "(the logarithm of 0 or of a negative number is undefined)")

    def tune_domain(self):
        from ray import tune

        return tune.loguniform(self.low, self.high)

    def is_log(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"loguniform({self.low!r}, {self.high!r})"


class RandInt(Distribution):
    kinds = ("int",)

    def __init__(self, low: int, high: int):
        name = f"randint({low!r}, {high!r})"
        for v in (low, high):
            if isinstance(v, bool) or not isinstance(v, int):
                raise RelexError(f"{name}: bounds must be integers")
        if not low < high:
            raise RelexError(f"{name}: low must be below high (high is excluded)")
        self.low, self.high = low, high

    def bounds(self) -> list[Any]:
        return [self.low, self.high - 1]

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and self.low <= value < self.high

    def tune_domain(self):
        from ray import tune

        return tune.randint(self.low, self.high)

    def __repr__(self) -> str:
        return f"randint({self.low!r}, {self.high!r})"


class Choice(Distribution):
    kinds = ("float", "int", "str", "bool")

    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise RelexError(f"choice() takes a non-empty list of values, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise RelexError(f"choice({list(values)!r}) repeats a value")
        self.values = list(values)

    def bounds(self) -> list[Any]:
        return list(self.values)

    def contains(self, value: Any) -> bool:
        return value in self.values

    def tune_domain(self):
        from ray import tune

        return tune.choice(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "choice", "values": self.values}

    def __repr__(self) -> str:
        return f"choice({self.values!r})"


class Narrow(Distribution):
    """A staged sweep's axis: ``dist`` narrowed to ``width`` of its range around the value each
    base configuration had (in log space for ``loguniform``), within the original bounds."""

    def __init__(self, dist: Distribution, width: float):
        if not isinstance(dist, (Uniform, RandInt)):
            raise RelexError(f"narrow() takes uniform, loguniform or randint, got {dist!r}")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < 1:
            raise RelexError(f"narrow({dist!r}, {width!r}): width must be a fraction in (0, 1)")
        self.dist, self.width = dist, float(width)
        self.kinds = dist.kinds

    def bounds(self) -> list[Any]:
        return self.dist.bounds()

    def around(self, center: Any) -> Distribution:
        """The distribution a grid point grown from a base configuration with ``center`` draws from."""
        d = self.dist
        center = min(max(center, d.bounds()[0]), d.bounds()[1])  # a base value outside the range
        if isinstance(d, RandInt):
            half = self.width * (d.high - 1 - d.low) / 2
            low = max(d.low, math.floor(center - half))
            return RandInt(low, max(min(d.high - 1, math.ceil(center + half)), low) + 1)
        log = d.is_log()
        lo, hi, c = (math.log(d.low), math.log(d.high), math.log(center)) if log else (d.low, d.high, center)
        half = self.width * (hi - lo) / 2
        low, high = max(lo, c - half), min(hi, c + half)
        if log:
            return LogUniform(math.exp(low), math.exp(high))
        if d.q is not None:  # keep the bounds on the q grid
            low = float(f"{math.floor(low / d.q + 1e-9) * d.q:.12g}")
            high = max(float(f"{math.ceil(high / d.q - 1e-9) * d.q:.12g}"), low + d.q)
        return Uniform(low, high, d.q)

    def tidy(self, value: Any) -> Any:
        return self.dist.tidy(value)

    def tune_domain(self):
        return self.dist.tune_domain()

    def is_log(self) -> bool:
        return self.dist.is_log()

    def to_json(self) -> dict[str, Any]:
        return {**self.dist.to_json(), "narrow": self.width}

    def __repr__(self) -> str:
        return f"narrow({self.dist!r}, {self.width!r})"


def _multiple(x: float, q: float) -> bool:
    return abs(x / q - round(x / q)) < 1e-9


def uniform(low: float, high: float, *, q: float | None = None) -> Uniform:
    """A float drawn uniformly from [low, high] (rounded to a multiple of ``q`` when given)."""
    return Uniform(low, high, q)


def loguniform(low: float, high: float) -> LogUniform:
    """A float whose logarithm is uniform on [log low, log high] (learning rates, decays)."""
    return LogUniform(low, high)


def randint(low: int, high: int) -> RandInt:
    """An integer from ``low`` to ``high - 1``."""
    return RandInt(low, high)


def narrow(dist: Distribution, width: float) -> Narrow:
    """In a staged sweep (``base=``): draw from ``width`` of ``dist``'s range around the value of
    each base configuration the new grid grows from."""
    return Narrow(dist, width)


def choice(values: Sequence[Any]) -> Choice:
    """One of ``values``, each equally likely."""
    return Choice(values)


def check_distributions(space: dict[str, Any], where: str) -> None:
    """Each distribution against its config field: kind, feature fields, every bound valid."""
    fixed = {k: v for k, v in space.items() if not hasattr(v, "values") and
             not isinstance(v, Distribution)}
    for key, dist in space.items():
        if not isinstance(dist, Distribution):
            continue
        at = f"{where}: space: {key}={dist!r}"
        if key in FEATURE_FIELDS:
            raise RelexError(f"{at}: {key} shapes the features built once before the trials; "
                             "give it grid([...]) instead of a distribution")
        kind = _FIELD_TYPES[key]
        if kind not in dist.kinds:
            hint = {"float": "uniform() or loguniform()", "int": "randint()"}.get(kind, "choice([...])")
            article = "an" if kind == "int" else "a"
            raise RelexError(f"{at}: {key} is {article} {kind} field; use {hint}")
        for bound in dist.bounds():
            TrialConfig.from_dict({**fixed, key: bound}, where=f"{at}: bound")


def format_float(f: float) -> str:
    """A value as written in a job file (3e-05, 0.1); a sampled one, which has every digit,
    to three significant digits, small ones in scientific notation (6.51e-04, 0.238)."""
    text = f"{f:g}"
    if len(text) <= 7:
        return text
    if abs(f) >= 0.01:
        return f"{f:.3g}"
    mantissa, exponent = f"{f:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def sampled_axes(space: dict[str, Any]) -> list[str]:
    return [k for k, v in space.items() if isinstance(v, Distribution)]


def draw(space: dict[str, Any], random_state) -> dict[str, Any]:
    """One value of every sampled axis, in the space's order."""
    return {k: v.sample(random_state) for k, v in space.items() if isinstance(v, Distribution)}


__all__ = ["Distribution", "uniform", "loguniform", "randint", "choice", "narrow", "check_distributions",
           "sampled_axes", "draw", "format_float", "FEATURE_FIELDS"]
