from inventory.models import Item


class Store:
    """Items by SKU, with stock movements and a low-stock report."""

    def __init__(self, low_stock_threshold: int = 5) -> None:
        self.items: dict[str, Item] = {}
        self.low_stock_threshold = low_stock_threshold

    def add(self, sku: str, name: str, quantity: int) -> Item:
        item = self.items.setdefault(sku, Item(sku, name))
        item.quantity += quantity
        return item

    def remove(self, sku: str, quantity: int) -> Item:
        item = self.items[sku]
        if quantity > item.quantity:
            raise ValueError(f"only {item.quantity} of {sku} in stock")
        item.quantity -= quantity
        return item

    def low_stock(self) -> list[Item]:
        return [i for i in self.items.values() if i.quantity < self.low_stock_threshold]
