"""drillkit: rehearse incidents from the playbook, timed by Prometheus, always reverted."""

__version__ = "0.1.0"
