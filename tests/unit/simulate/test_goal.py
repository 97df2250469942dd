"""The quality goal of `default` against the stock VPA's parity strategy, on the generated
families of the seeds the goal names: 0-4 (tuned on) and 100-104 (reported separately).

Against `vpa` on the same traces: CPU and memory slack each at least 25 % lower, no more OOM
kills, no more CPU shortage, and fewer resizes than 1.5 times the VPA's. docs/simulate.md
gives the figures, and those of other seeds.
"""

from __future__ import annotations

import pytest

from analytics.simulate.families import generate
from analytics.simulate.replay import prepare_trace, simulate_many


@pytest.mark.parametrize("seeds", [range(0, 5), range(100, 105)], ids=["0-4", "100-104"])
def test_default_meets_the_goal_against_the_vpa(seeds: range) -> None:
    trace = prepare_trace(generate(seeds=seeds, days=14))
    vpa, default = (r.total for r in simulate_many(trace, [("vpa", None), ("default", None)]))
    assert default.cpu_slack_core_hours <= 0.75 * vpa.cpu_slack_core_hours
    assert default.memory_slack_gib_hours <= 0.75 * vpa.memory_slack_gib_hours
    assert default.oom_kills <= vpa.oom_kills
    assert default.cpu_shortage_core_hours <= vpa.cpu_shortage_core_hours
    assert default.resizes < 1.5 * vpa.resizes
