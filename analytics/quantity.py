"""Kubernetes resource quantities: parsing, and formatting as the VPA recommender writes them.

Parsing follows the grammar of apimachinery's `resource.Quantity` (`<sign><number><suffix>`,
suffixes `n u m "" k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or a decimal exponent `e3`/`E-2`) and is
exact: values are `Fraction`s, converted to integers by rounding up like `Quantity.Value()` and
`Quantity.MilliValue()` do.

Formatting reproduces `Quantity.String()` for the two constructors the recommender uses:
CPU as `NewScaledQuantity(milliCores, -3)` (DecimalSI) and memory as `NewQuantity(bytes, BinarySI)`.
A BinarySI value that is not a multiple of 1024 prints as a plain integer of bytes, and a
non-zero value below 1024 bytes falls back to DecimalSI ("1k" for 1000 bytes).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = [
    "format_cpu_millicores",
    "format_memory_bytes",
    "parse_cpu_cores",
    "parse_cpu_millicores",
    "parse_memory_bytes",
    "parse_quantity",
]

_DECIMAL_SUFFIX_EXPONENT = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIX_EXPONENT = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_EXPONENT_SUFFIX = {
    exponent: suffix for suffix, exponent in _DECIMAL_SUFFIX_EXPONENT.items()
}
_BINARY_EXPONENT_SUFFIX = {exponent: suffix for suffix, exponent in _BINARY_SUFFIX_EXPONENT.items()}

# The number part accepts "1", "1.5", "1." and ".5" like apimachinery does.
_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]?)"
)
_INT64_MAX = 2**63 - 1


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity string ("250m" -> 1/4, "1Ki" -> 1024).

    Raises ValueError naming the text when it is not a quantity.
    """
    if not isinstance(text, str):
        raise ValueError(f"quantity must be a string, got {text!r}")
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid quantity {text!r}: expected e.g. '250m', '1.5', '512Mi', '1e3'")
    value = Fraction(match["number"])
    suffix = match["suffix"]
    if suffix in _BINARY_SUFFIX_EXPONENT:
        value *= 2 ** _BINARY_SUFFIX_EXPONENT[suffix]
    elif suffix[:1] in ("e", "E") and len(suffix) > 1:
        value *= Fraction(10) ** int(suffix[1:])
    else:
        value *= Fraction(10) ** _DECIMAL_SUFFIX_EXPONENT[suffix]
    return -value if match["sign"] == "-" else value


def _non_negative(text: str, what: str) -> Fraction:
    value = parse_quantity(text)
    if value < 0:
        raise ValueError(f"invalid {what} quantity {text!r}: must not be negative")
    return value


def parse_cpu_millicores(text: str) -> int:
    """CPU quantity in millicores, rounded up like `Quantity.MilliValue()` ("0.1m" -> 1)."""
    return math.ceil(_non_negative(text, "CPU") * 1000)


def parse_cpu_cores(text: str) -> float:
    """CPU quantity in cores, as the nearest float ("250m" -> 0.25)."""
    return float(_non_negative(text, "CPU"))


def parse_memory_bytes(text: str) -> int:
    """Memory quantity in bytes, rounded up like `Quantity.Value()` ("0.5Ki" -> 512)."""
    return math.ceil(_non_negative(text, "memory"))


def _strip_factors(value: int, base: int) -> tuple[int, int]:
    times = 0
    while value >= base and value % base == 0:
        value //= base
        times += 1
    return value, times


def _decimal_si(mantissa: int, exponent: int) -> str:
    """Canonical DecimalSI text of mantissa * 10**exponent (mantissa > 0)."""
    mantissa, times = _strip_factors(mantissa, 10)
    exponent += times
    # The exponent must be a multiple of 3 to have an SI suffix; Go's % truncates toward zero.
    remainder = int(math.fmod(exponent, 3))
    if remainder in (1, -2):
        mantissa, exponent = mantissa * 10, exponent - 1
    elif remainder in (2, -1):
        mantissa, exponent = mantissa * 100, exponent - 2
    suffix = _DECIMAL_EXPONENT_SUFFIX.get(exponent)
    if suffix is None:
        # Beyond the SI table apimachinery emits no suffix at all; never reached for int64
        # inputs at scale -3 or 0.
        raise ValueError(f"quantity exponent {exponent} has no SI suffix")
    return f"{mantissa}{suffix}"


def _check_int64(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f"{what} {value} does not fit in an int64")


def format_cpu_millicores(millicores: int) -> str:
    """`NewScaledQuantity(millicores, -3).String()`: 126 -> "126m", 2000 -> "2", 1500 -> "1500m"."""
    _check_int64(millicores, "CPU millicores")
    if millicores == 0:
        return "0"
    sign = "-" if millicores < 0 else ""
    return sign + _decimal_si(abs(millicores), -3)


def format_memory_bytes(memory_bytes: int) -> str:
    """`NewQuantity(bytes, BinarySI).String()`.

    262144000 -> "250Mi", 1000 -> "1k" (below 1024 is DecimalSI), 1025 -> "1025".
    """
    _check_int64(memory_bytes, "memory bytes")
    if memory_bytes == 0:
        return "0"
    sign = "-" if memory_bytes < 0 else ""
    magnitude = abs(memory_bytes)
    if magnitude < 1024:
        return sign + _decimal_si(magnitude, 0)
    mantissa, times = _strip_factors(magnitude, 1024)
    return f"{sign}{mantissa}{_BINARY_EXPONENT_SUFFIX.get(times * 10, '')}"
