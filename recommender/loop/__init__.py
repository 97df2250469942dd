"""The recommender loop: from watched VPAs and pods and Prometheus history to VPA status."""
