"""Where usage samples come from: recorded traces (`files`); later Prometheus and synthetics."""
