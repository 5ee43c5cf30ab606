from inventory import Store


def test_add_and_remove():
    store = Store()
    store.add("A1", "apple", 10)
    store.remove("A1", 3)
    assert store.items["A1"].quantity == 7


def test_low_stock():
    store = Store(low_stock_threshold=5)
    store.add("B2", "bread", 2)
    assert [i.sku for i in store.low_stock()] == ["B2"]
