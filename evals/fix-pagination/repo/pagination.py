def page(items: list, number: int, size: int) -> list:
    """The items on page `number` (pages are numbered from 1) when a page holds `size` items."""
    start = number * size
    return items[start : start + size]
