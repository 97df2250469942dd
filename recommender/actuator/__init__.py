"""The fallback actuator: what the stock VPA updater cannot apply (a resize the kubelet
answers `Infeasible`, one `Deferred` for too long, a workload below the updater's
min-replicas, memory of a runtime that reads it at boot) becomes a controlled rollout of the
owning workload, within safety limits, with every action and skip audited.

Pure core: `runtimes` (which containers read memory at boot), `inputs` (pods, workloads and
PodDisruptionBudgets as the core sees them, parsed from JSON), `plan` (the decisions),
`audit` (the records). Adapters: `events` (Kubernetes Events), `kube` (reads and patches),
`service` (one pass after each tick of `vpa-fleet run`). docs/actuation.md describes it.
"""
