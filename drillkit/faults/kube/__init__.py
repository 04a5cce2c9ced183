"""Faults against a Kubernetes cluster, one module per family of the playbook's incidents.

Every fault registers its revert record with the journal *before* it changes anything, records
what the revert needs (names, previous replica counts, previous pod templates, backup object
names — never secret values) and reverts idempotently from that record alone (404 = already
reverted), so `drillkit cleanup` in another process can finish the job after a crash. Every
object a fault creates carries `drillkit.io/run-id=<run id>`. All cluster access goes through
`drillkit.kube.Kube`.

This package imports none of its modules: validating a pod-kill scenario loads the pod-kill
module alone (drillkit.faults.fault_class reads `KINDS`), and cleanup imports what it uses from
the modules themselves.
"""

# kind -> "module:Class", as drillkit.faults.fault_class reads it
KINDS = {
    "pod-kill": "drillkit.faults.kube.pods:PodKill",
    "scale-to-zero": "drillkit.faults.kube.workloads:ScaleToZero",
    "bad-rollout": "drillkit.faults.kube.workloads:BadRollout",
    "auth-secret-corruption": "drillkit.faults.kube.secrets:AuthSecretCorruption",
    "db-connection-exhaustion": "drillkit.faults.kube.database:DbConnectionExhaustion",
    "node-drain": "drillkit.faults.kube.nodes:NodeDrain",
    "node-memory-pressure": "drillkit.faults.kube.nodememory:NodeMemoryPressure",
    "memory-pressure": "drillkit.faults.kube.memory:MemoryPressure",
    "cpu-pressure": "drillkit.faults.kube.pressure:CpuPressure",
    "network-latency": "drillkit.faults.kube.network:NetworkLatency",
}
