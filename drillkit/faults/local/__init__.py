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

# kind -> "module:Class": a scenario's faults are imported when it names them (see
# drillkit.faults.fault_class), so validating a process-kill drill does not load psycopg's
# connection holder or the cgroup code.
KINDS = {
    "process-kill": "drillkit.faults.local.processes:ProcessKill",
    "db-connection-exhaustion": "drillkit.faults.local.database:DbConnectionExhaustion",
    "memory-pressure": "drillkit.faults.local.memory:MemoryPressure",
    "cpu-pressure": "drillkit.faults.local.cpu:CpuPressure",
    "latency": "drillkit.faults.local.latency:Latency",
    "auth-secret-corruption": "drillkit.faults.local.secrets:AuthSecretCorruption",
}
