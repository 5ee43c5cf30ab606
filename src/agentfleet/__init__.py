"""AgentFleet: run AI coding agents on git repositories."""

__version__ = "0.1.0"
