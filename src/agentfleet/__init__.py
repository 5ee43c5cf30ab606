"""AgentFleet: run AI coding agents on git repositories."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentfleet")  # one place: pyproject.toml
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
