"""Faults against a Kubernetes cluster, one module per family of the playbook's incidents.

Every fault registers its revert record with the journal *before* it changes anything, records
what the revert needs (names, previous replica counts, previous pod templates, backup object
names — never secret values) and reverts idempotently from that record alone (404 = already
reverted), so `drillkit cleanup` in another process can finish the job after a crash. Every
object a fault creates carries `drillkit.io/run-id=<run id>`. All cluster access goes through
`drillkit.kube.Kube`.
"""

from drillkit.faults import FaultClass
from drillkit.faults.kube.database import DbConnectionExhaustion
from drillkit.faults.kube.memory import MemoryPressure
from drillkit.faults.kube.network import NetworkLatency
from drillkit.faults.kube.nodememory import NodeMemoryPressure
from drillkit.faults.kube.nodes import NodeDrain
from drillkit.faults.kube.pods import PodKill
from drillkit.faults.kube.pressure import CpuPressure
from drillkit.faults.kube.secrets import AuthSecretCorruption, restore_from_backup
from drillkit.faults.kube.workloads import (
    RECORDING_FAULTS,
    BadRollout,
    ScaleToZero,
    record_name,
    release_workload,
    restore_recorded,
)

# kind -> "module:Class", as drillkit.faults.fault_class reads it (this package imports its
# modules anyway: cleanup uses what it exports)
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

FAULTS: list[FaultClass] = [
    PodKill,
    ScaleToZero,
    BadRollout,
    AuthSecretCorruption,
    DbConnectionExhaustion,
    NodeDrain,
    NodeMemoryPressure,
    MemoryPressure,
    CpuPressure,
    NetworkLatency,
]

__all__ = [
    "FAULTS",
    "KINDS",
    "RECORDING_FAULTS",
    "AuthSecretCorruption",
    "BadRollout",
    "CpuPressure",
    "DbConnectionExhaustion",
    "MemoryPressure",
    "NetworkLatency",
    "NodeDrain",
    "NodeMemoryPressure",
    "PodKill",
    "ScaleToZero",
    "record_name",
    "release_workload",
    "restore_from_backup",
    "restore_recorded",
]
