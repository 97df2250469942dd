"""The few Go numeric rules the stock recommender's results depend on, for scalars and arrays.

Times are int64 nanoseconds since the Unix epoch; durations are int64 nanoseconds. `UNSET_NS`
stands for Go's zero `time.Time` (year 1), which the recommender uses for "no timestamp yet".
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from analytics.arrays import FloatArray, Int64Array

__all__ = [
    "EXP2_BLOCK",
    "EXP2_OVERFLOW",
    "EXP2_UNDERFLOW",
    "MAX_RESOURCE_AMOUNT",
    "UNSET_NS",
    "Exp2Blocks",
    "duration_minutes",
    "go_pow",
    "go_pow_array",
    "reference_exponent",
    "resource_amount",
    "resource_amount_array",
    "round_time",
    "round_time_array",
]


UNSET_NS: Final = np.iinfo(np.int64).min
"""Sentinel for Go's zero time.Time: before every real timestamp."""

MAX_RESOURCE_AMOUNT: Final = 10**14
"""Upper bound of a resource amount (millicores or bytes), `model.MaxResourceAmount`."""

# Go's zero time (0001-01-01T00:00:00Z) in Unix seconds; Time.Round counts multiples from it.
_GO_ZERO_TIME_UNIX_S: Final = -62135596800
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _zero_time_remainder(duration_ns: int) -> int:
    return (_GO_ZERO_TIME_UNIX_S * 10**9) % duration_ns


def round_time(t_ns: int, duration_ns: int) -> int:
    """`time.Time.Round(d)`: the nearest multiple of d counted from Go's zero time; halves go up."""
    if duration_ns <= 0:
        return t_ns
    remainder = (t_ns - _GO_ZERO_TIME_UNIX_S * 10**9) % duration_ns
    if remainder + remainder < duration_ns:
        return t_ns - remainder
    return t_ns + (duration_ns - remainder)


def round_time_array(t_ns: Int64Array, duration_ns: int) -> Int64Array:
    """`round_time` over an array of real (set) timestamps."""
    offset = np.int64(_zero_time_remainder(duration_ns))
    remainder = (np.mod(t_ns, duration_ns) - offset) % duration_ns
    down = remainder + remainder < duration_ns
    result: Int64Array = np.where(down, t_ns - remainder, t_ns + (duration_ns - remainder))
    return result


def _saturating_sub(a_ns: int, b_ns: int) -> int:
    # time.Time.Sub saturates at the limits of time.Duration.
    return min(max(a_ns - b_ns, _INT64_MIN), _INT64_MAX)


def reference_exponent(old_reference_ns: int, new_reference_ns: int, half_life_ns: int) -> int:
    """Power of two by which weights are scaled when a decaying histogram's reference moves.

    Mirrors `round(float64(old.Sub(new)) / float64(halfLife))`; an unset old reference gives an
    exponent so negative that the scale factor is exactly zero.
    """
    if old_reference_ns == UNSET_NS:
        old_reference_ns = _GO_ZERO_TIME_UNIX_S * 10**9
    delta = float(_saturating_sub(old_reference_ns, new_reference_ns)) / float(half_life_ns)
    return math.floor(delta + 0.5)


def duration_minutes(duration_ns: int) -> float:
    """`time.Duration.Minutes()`, computed the way Go does (whole minutes plus a remainder)."""
    minute_ns = 60 * 10**9
    whole = -(-duration_ns // minute_ns) if duration_ns < 0 else duration_ns // minute_ns
    rest = duration_ns - whole * minute_ns
    return float(whole) + float(rest) / 60e9


def resource_amount(value: float) -> int:
    """`resourceAmountFromFloat`: clamp to [0, 1e14], then truncate toward zero.

    NaN maps to 0 (Go's float-to-int conversion of NaN is platform-defined).
    """
    if math.isnan(value):
        return 0
    if value > MAX_RESOURCE_AMOUNT:
        return MAX_RESOURCE_AMOUNT
    if value < 0:
        return 0
    return int(value)


def resource_amount_array(values: FloatArray) -> Int64Array:
    """`resource_amount` over an array."""
    clean = np.where(np.isnan(values), 0.0, values)
    clamped = np.clip(clean, 0.0, float(MAX_RESOURCE_AMOUNT))
    result: Int64Array = np.trunc(clamped).astype(np.int64)
    return result


def go_pow(x: float, y: float) -> float:
    """Go's `math.Pow` for the cases the estimators use (x >= 0), bit for bit when y is integral.

    Integral exponents use Go's algorithm (squaring the frexp mantissa and accumulating the
    binary exponent), which can differ from C's pow in the last bit. Fractional exponents fall
    back to exp(yf*log(x)) for the fractional part, as Go does, with the platform's exp and log.
    """
    return float(go_pow_array(np.array([x], dtype=np.float64), y)[0])


def _integer_power(x: FloatArray, n: int, a1: FloatArray) -> tuple[FloatArray, Int64Array]:
    """a1 * x**n as (mantissa, binary exponent), squaring the frexp mantissa as Go does."""
    x1, exponent = np.frexp(x)
    xe = exponent.astype(np.int64)
    ae = np.zeros_like(xe)
    overflow = np.zeros(x.shape, dtype=bool)
    while n != 0:
        # Go stops squaring once the binary exponent leaves float range; Ldexp then saturates.
        escaped = (xe < -(1 << 12)) | (xe > (1 << 12))
        ae = np.where(escaped & ~overflow, ae + xe, ae)
        overflow |= escaped
        live = ~overflow
        if n & 1:
            a1 = np.where(live, a1 * x1, a1)
            ae = np.where(live, ae + xe, ae)
        x1 = np.where(live, x1 * x1, x1)
        xe = np.where(live, xe << 1, xe)
        small = live & (x1 < 0.5)
        x1 = np.where(small, x1 + x1, x1)
        xe = np.where(small, xe - 1, xe)
        n >>= 1
    return a1, ae


def go_pow_array(x: FloatArray, y: float) -> FloatArray:
    """`go_pow` over an array of bases x >= 0 (+Inf allowed) with one exponent y."""
    x = np.asarray(x, dtype=np.float64)
    if y == 0:
        return np.ones_like(x)
    if y == 1:
        return x.copy()
    if y in (0.5, -0.5):
        root = np.sqrt(x)
        if y > 0:
            return root
        with np.errstate(divide="ignore"):
            inverse: FloatArray = 1.0 / root
        return inverse
    special_inf = np.isinf(x)
    special_zero = x == 0
    special_one = x == 1
    yf, yi = math.modf(abs(y))
    a1 = np.ones_like(x)
    if yf != 0:
        if yf > 0.5:
            yf -= 1
            yi += 1
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a1 = np.exp(yf * np.log(x))
    a1, ae = _integer_power(np.where(special_inf | special_zero, 1.0, x), int(yi), a1)
    if y < 0:
        with np.errstate(divide="ignore"):
            a1 = 1.0 / a1
        ae = -ae
    clipped = np.clip(ae, -(1 << 20), 1 << 20).astype(np.int32)
    with np.errstate(over="ignore", under="ignore"):
        result: FloatArray = np.ldexp(a1, clipped)
    result = np.where(special_one, 1.0, result)
    if y > 0:
        result = np.where(special_inf, np.inf, np.where(special_zero, 0.0, result))
    else:
        result = np.where(special_inf, 0.0, np.where(special_zero, np.inf, result))
    return result


# Go's math.Exp2 and (amd64) math.Log, operation for operation: the platform's exp2 and log
# differ from them in the last bit for a few percent of inputs, which is enough to move a
# percentile across a bucket when two weights tie.
_LN2_HI: Final = 6.93147180369123816490e-01
_LN2_LO: Final = 1.90821492927058770002e-10
_EXP_P: Final = (
    1.66666666666666657415e-01,
    -2.77777777770155933842e-03,
    6.61375632143793436117e-05,
    -1.65339022054652515390e-06,
    4.13813679705723846039e-08,
)
_LOG_L: Final = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_HALF_SQRT2: Final = 7.07106781186547524401e-01


EXP2_OVERFLOW: Final = 1.0239999999999999e03
"""Go's Exp2 returns early (inf, 0 or the NaN itself) outside [EXP2_UNDERFLOW, EXP2_OVERFLOW]."""
EXP2_UNDERFLOW: Final = -1.0740e03
EXP2_BLOCK: Final = 32768
"""Elements per block of `Exp2Blocks` by default: its scratch arrays stay in the L2 cache."""


def go_exp2(x: FloatArray) -> FloatArray:
    """Go's `math.Exp2` over an array, bit for bit."""
    x = np.asarray(x, dtype=np.float64)
    if x.size and x.min() >= EXP2_UNDERFLOW and x.max() <= EXP2_OVERFLOW:
        # No NaN (min and max would be NaN), no infinity, no early return: every element
        # takes the arithmetic path.
        flat = x.ravel()
        blocked = np.empty(flat.shape[0], dtype=np.float64)
        blocks = Exp2Blocks(min(flat.shape[0], EXP2_BLOCK))
        for start in range(0, flat.shape[0], EXP2_BLOCK):
            stop = start + EXP2_BLOCK
            blocks.in_range(flat[start:stop], blocked[start:stop])
        return blocked.reshape(x.shape)
    finite = np.isfinite(x) & (x <= EXP2_OVERFLOW) & (x >= EXP2_UNDERFLOW)
    xs = np.where(finite, x, 0.0)
    k = np.where(xs > 0, np.trunc(xs + 0.5), np.where(xs < 0, np.trunc(xs - 0.5), 0.0))
    t = xs - k
    hi = t * _LN2_HI
    lo = -t * _LN2_LO
    r = hi - lo
    tt = r * r
    p1, p2, p3, p4, p5 = _EXP_P
    c = r - tt * (p1 + tt * (p2 + tt * (p3 + tt * (p4 + tt * p5))))
    y = 1 - ((lo - (r * c) / (2 - c)) - hi)
    with np.errstate(over="ignore", under="ignore"):
        value = np.ldexp(y, k.astype(np.int32))
    result: FloatArray = np.where(
        finite, value, np.where(np.isnan(x), x, np.where(x > 0, np.inf, 0.0))
    )
    return result


class Exp2Blocks:
    """`go_exp2` block by block (blocks of at most `size` elements) into reused scratch arrays.

    On large arrays the plain formula is bound by memory traffic (~40 full-size temporaries);
    blocks that stay in the L2 cache make it ~5x faster. The operations are the same, up to
    exact rewritings: `x + copysign(0.5, x)` is `x + 0.5` or `x - 0.5` (for -0.0 it gives
    k = -0.0 and t = +0.0, and y = 1 either way), `t * -Ln2Lo` is `-t * Ln2Lo`, and additions
    and multiplications are commutative.
    """

    def __init__(self, size: int = EXP2_BLOCK) -> None:
        self.size = size
        self._scratch = np.empty((6, size), dtype=np.float64)
        self._exponent = np.empty(size, dtype=np.int32)

    def into(self, x: FloatArray, out: FloatArray) -> None:
        """out[:] = go_exp2(x), for a 1-D block x of at most `size` elements."""
        if x.shape[0] and x.min() >= EXP2_UNDERFLOW and x.max() <= EXP2_OVERFLOW:
            self.in_range(x, out)
        else:
            out[...] = go_exp2(x)

    def in_range(self, x: FloatArray, out: FloatArray) -> None:
        """`into` for a block whose elements all lie in [underflow, overflow]."""
        p1, p2, p3, p4, p5 = _EXP_P
        m = x.shape[0]
        k, t, hi, lo, r, p = self._scratch[:, :m]
        np.copysign(0.5, x, out=k)
        k += x
        np.trunc(k, out=k)
        np.subtract(x, k, out=t)
        np.multiply(t, _LN2_HI, out=hi)
        np.multiply(t, -_LN2_LO, out=lo)
        np.subtract(hi, lo, out=r)
        tt = t  # t is not needed any more
        np.multiply(r, r, out=tt)
        # c = r - tt*(p1 + tt*(p2 + tt*(p3 + tt*(p4 + tt*p5))))
        np.multiply(tt, p5, out=p)
        p += p4
        p *= tt
        p += p3
        p *= tt
        p += p2
        p *= tt
        p += p1
        p *= tt
        c = p
        np.subtract(r, p, out=c)
        # y = 1 - ((lo - (r*c)/(2-c)) - hi)
        y = r
        np.multiply(r, c, out=y)
        np.subtract(2.0, c, out=c)
        np.divide(y, c, out=y)
        np.subtract(lo, y, out=y)
        y -= hi
        np.subtract(1.0, y, out=y)
        exponent = self._exponent[:m]
        exponent[...] = k
        np.ldexp(y, exponent, out=out)


def go_log(x: FloatArray) -> FloatArray:
    """Go's amd64 `math.Log` over an array of positive normal numbers (inf and nan pass through)."""
    x = np.asarray(x, dtype=np.float64)
    regular = np.isfinite(x) & (x > 0)
    xs = np.where(regular, x, 1.0)
    bits = xs.view(np.uint64)
    fraction = ((bits & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FE0000000000000)).view(
        np.float64
    )
    k = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 0x3FE
    small = fraction <= _HALF_SQRT2
    kf = k.astype(np.float64) - small
    f = fraction * (1.0 + small) - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    l1, l2, l3, l4, l5, l6, l7 = _LOG_L
    t1 = s2 * (((l7 * s4 + l5) * s4 + l3) * s4 + l1)
    t2 = s4 * ((l6 * s4 + l4) * s4 + l2)
    big_r = t1 + t2
    hfsq = 0.5 * f * f
    value = kf * _LN2_HI - ((hfsq - (s * (hfsq + big_r) + kf * _LN2_LO)) - f)
    with np.errstate(divide="ignore", invalid="ignore"):
        fallback = np.log(x)
    result: FloatArray = np.where(regular, value, fallback)
    return result
