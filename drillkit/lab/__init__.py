"""The embedded demo platform that drills break: a small chat API backed by PostgreSQL, a
synthetic traffic generator and the Prometheus alert rules that detect the playbook's common
incidents. Everything here runs as plain local processes (and, unchanged, in the kind lab)."""
