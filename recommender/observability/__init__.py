"""The recommender's own health: Prometheus metrics served on /metrics by `vpa-fleet run`."""
