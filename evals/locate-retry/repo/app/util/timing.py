import time


def retry_with_backoff(fn, attempts=3, delay_s=0.5):
    """Call fn until it succeeds, doubling the delay after each failure."""
    for attempt in range(attempts):
        try:
            return fn()
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay_s * 2**attempt)
