"""Fleet-scale compute: usage samples in, recommendations out. Knows no Kubernetes objects.

Entry points: `analytics.trace.recommend_trace` (a usage frame to recommendations),
`analytics.usage` (the sample frame schema), `analytics.ingest.ingest_samples` and
`analytics.store.AggregateStore` (vectorized state for many containers),
`analytics.strategies` (named strategies built from `analytics.estimators`), and
`analytics.quantity` (Kubernetes quantities). See docs/engine.md.
"""
