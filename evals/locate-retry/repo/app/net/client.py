import urllib.request

from app.util.timing import retry_with_backoff


def fetch(url: str) -> bytes:
    return retry_with_backoff(lambda: urllib.request.urlopen(url, timeout=10).read())
