"""The agent: workspace preparation, the sandbox, the LLM tool-calling loop."""
