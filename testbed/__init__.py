"""The local control plane used by tests, benchmarks and the demo.

Real components only: etcd, kube-apiserver and kube-controller-manager built from their Go
modules, KWOK simulating nodes and pods, Prometheus from Debian's package with backfilled
history, and a local Ray. Everything binds to 127.0.0.1.
"""
