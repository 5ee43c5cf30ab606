def line_count(text: str) -> int:
    """How many lines `text` has."""
    return len(text.splitlines())
