"""`python -m guard_server.unlearn`: the `guard-unlearn` command."""

from guard_server.unlearn.cli import main

main()
