def title_case(text: str) -> str:
    """Every word capitalized."""
    return " ".join(word.capitalize() for word in text.split())
