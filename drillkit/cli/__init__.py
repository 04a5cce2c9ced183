"""The `drillkit` command: parse options, wire the pieces, map errors to exit codes.

Exit codes: 0 every target met; 1 a target missed (or the drill failed / hit an abort
condition); 2 bad input; 3 target system or Prometheus unavailable; 4 the drill ran but its
journal or report could not be written; 5 not started (steady state, alert already active or
target busy: retry later); 130 interrupted (after reverting). A suite exits with its drills'
most serious code (drillkit.suite). Logic lives below this package; heavy imports are lazy.

`common` holds the group and shared options; each other module registers its commands on it
and is imported only when one of its commands runs (`common.COMMANDS`).
"""

from drillkit.cli.common import main

__all__ = ["main"]
