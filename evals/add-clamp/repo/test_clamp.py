from mathutils import clamp

assert clamp(5, 0, 10) == 5
assert clamp(-3, 0, 10) == 0
assert clamp(42, 0, 10) == 10
assert clamp(2.5, 1.0, 2.0) == 2.0
try:
    clamp(1, 5, 0)
except ValueError:
    pass
else:
    raise AssertionError("clamp(1, 5, 0) should raise ValueError")
print("test_clamp: all passed")
