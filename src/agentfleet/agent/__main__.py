"""The agent entry point, the same locally and in the Cloud Run Job image:

python -m agentfleet.agent --task-id ID [--attempt N]
"""

from agentfleet.agent.attempt import main

if __name__ == "__main__":
    raise SystemExit(main())
