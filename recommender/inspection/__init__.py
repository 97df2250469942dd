"""What vpa-fleet decided and why, for people: pure explanations and summaries (explain.py,
summary.py) and the adapter that reads them from a cluster (source.py)."""
