"""One validation of thresholds, counts and image sizes, shared by the Python API and the CLI.

:class:`~featherface_deploy.postprocess.PostprocessConfig`, :class:`~featherface_deploy.detector.FaceDetector`,
the exporters' ``imgsz`` and every command-line option that takes a threshold or a size call these, so
NaN, an out-of-range value, a zero or negative count or size, and a size too large to allocate are refused
the same way everywhere, with one line that names the value. numpy-free (it runs in device bundles).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Optional, Tuple

from featherface_deploy.errors import InputError

# The largest input an export builds (height × width): 40 MP, the detector's native-resolution limit.
MAX_EXPORT_PIXELS = 40_000_000


def bounded(name: str, value, low: float, high: Optional[float] = None) -> float:
    """``value`` as a finite float from ``low`` to ``high`` (``None``: no upper bound).

    Raises:
        InputError: Not a real number, NaN, infinite, or out of range.
    """
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and low <= number and (high is None or number <= high)):
        span = f"from {low:g} to {high:g}" if high is not None else f"≥ {low:g}"
        raise InputError(f"{name} must be a finite number {span}, got {value!r}")
    return number


def probability(name: str, value) -> float:
    """``value`` as a float in [0, 1] (see :func:`bounded`)."""
    return bounded(name, value, 0.0, 1.0)


def positive_count(name: str, value) -> int:
    """``value`` as an integer ≥ 1.

    Raises:
        InputError: Not an integer (a bool or float included), or < 1.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InputError(f"{name} must be an integer ≥ 1, got {value!r}")
    return int(value)


def image_size(value, name: str = "size") -> Optional[Tuple[int, int]]:
    """A size as (height, width): ``None`` stays ``None``, an int ``N`` is the square ``(N, N)``.

    Raises:
        InputError: Not one or two integers ≥ 1.
    """
    if value is None:
        return None
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in pair):
        raise InputError(f"{name} must be N or (height, width) with integers ≥ 1, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_pixels(size: Tuple[int, int], max_pixels: Optional[int], what: str, hint: str) -> None:
    """Refuses a (height, width) over ``max_pixels`` (``None`` or 0: no limit) before anything is allocated.

    Raises:
        InputError: Over the limit; the message names both and ``hint``.
    """
    height, width = size
    if max_pixels and height * width > max_pixels:
        raise InputError(f"{what} {height}×{width} ({height * width:,} pixels) is over the limit of "
                         f"{max_pixels:,} pixels; {hint}")

