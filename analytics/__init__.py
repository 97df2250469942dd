"""Fleet-scale compute: usage samples in, recommendations out. Knows no Kubernetes objects."""
