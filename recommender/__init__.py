"""vpa-fleet: the VPA-facing product (Kubernetes adapters, status writes, CLI)."""

__version__ = "0.1.0"
