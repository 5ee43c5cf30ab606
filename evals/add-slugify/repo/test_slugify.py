from textutils import slugify

assert slugify("Hello, World!") == "hello-world", slugify("Hello, World!")
assert slugify("  Already-slugged  ") == "already-slugged"
assert slugify("Python 3.12 Release") == "python-3-12-release"
print("test_slugify: all passed")
