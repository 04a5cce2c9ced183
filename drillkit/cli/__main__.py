"""`python -m drillkit.cli`."""

from drillkit.cli import main

main()
