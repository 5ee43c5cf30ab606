"""`python -m agentfleet.cli`: the `agentfleet` command."""

from agentfleet.cli import main

if __name__ == "__main__":
    main()
