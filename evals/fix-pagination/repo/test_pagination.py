from pagination import page

items = list(range(1, 11))
assert page(items, 1, 3) == [1, 2, 3], page(items, 1, 3)
assert page(items, 2, 3) == [4, 5, 6], page(items, 2, 3)
assert page(items, 4, 3) == [10], page(items, 4, 3)
assert page(items, 5, 3) == [], page(items, 5, 3)
print("test_pagination: all passed")
