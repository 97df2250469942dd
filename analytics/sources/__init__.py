"""Where usage samples come from: recorded traces (`files`) and Prometheus history
(`prometheus`, with the pure PromQL and answer handling in `promql`)."""
