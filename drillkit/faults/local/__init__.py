"""Faults done to this host: real processes, a real PostgreSQL, real cgroups and real files —
the embedded lab's incidents, and anything else run locally. One module per fault family:

- `processes`: process-kill (outage)
- `database`: db-connection-exhaustion, with its detached connection holder in `holder`
- `memory`: memory-pressure (memory leak, OOM kill), through `cgroups`
- `cpu`: cpu-pressure (stress-ng)
- `latency`: the lab DB proxy's delay
- `secrets`: auth-secret-corruption

Every fault journals a typed revert record before it does harm, adds what it learns through
`RevertHandle.update`, and reverts from that record alone, so `drillkit cleanup` can finish the
job in another process after a crash. Harm that could outlive drillkit carries its own
dead-man's switch (stress-ng's `--timeout`, the connection holder's owner watch and time limit).
"""

from __future__ import annotations

from typing import Any

from drillkit.faults import Fault
from drillkit.faults.local.cpu import CpuPressure
from drillkit.faults.local.database import DbConnectionExhaustion
from drillkit.faults.local.latency import Latency
from drillkit.faults.local.memory import MemoryPressure
from drillkit.faults.local.processes import ProcessKill
from drillkit.faults.local.secrets import AuthSecretCorruption

FAULTS: list[type[Fault[Any, Any, Any]]] = [
    ProcessKill,
    DbConnectionExhaustion,
    MemoryPressure,
    CpuPressure,
    Latency,
    AuthSecretCorruption,
]
