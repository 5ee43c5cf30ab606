def lerp(a: float, b: float, t: float) -> float:
    """The point a fraction `t` of the way from a to b."""
    return a + (b - a) * t
