def in_stock(counts: dict[str, int], item: str) -> bool:
    return counts.get(item, 0) > 0
