"""Replaying strategies over usage traces to measure recommendation quality.

`families` generates seeded synthetic traces (steady, diurnal, leak, ...) with the requests a
simulation starts from; `replay` replays strategies over a trace as the VPA updater would
apply them and measures slack, shortage, OOM kills and resizes. See docs/simulate.md.
"""
