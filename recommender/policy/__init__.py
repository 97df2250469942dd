"""RecommenderPolicy: per-namespace (or per-label) recommendation settings (crds/)."""
