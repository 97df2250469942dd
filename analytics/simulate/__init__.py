"""Replaying strategies over usage traces to measure recommendation quality.

`families` generates seeded synthetic traces (steady, diurnal, leak, ...) with the requests a
simulation starts from. See docs/simulate.md.
"""
