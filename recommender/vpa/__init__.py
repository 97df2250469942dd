"""VerticalPodAutoscaler objects (`autoscaling.k8s.io/v1`) as typed models, and the pure
rules the stock recommender applies to them: selection, conditions."""
