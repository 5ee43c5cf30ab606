import hashlib
import sqlite3

DB = "links.db"


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS links (code TEXT PRIMARY KEY, url TEXT)")
    return conn


def shorten(url: str) -> str:
    """A 6-character code for `url`, stored so it can be resolved later."""
    code = hashlib.sha1(url.encode()).hexdigest()[:6]
    with _db() as conn:
        conn.execute("INSERT OR IGNORE INTO links VALUES (?, ?)", (code, url))
    return code


def resolve(code: str) -> str | None:
    with _db() as conn:
        row = conn.execute("SELECT url FROM links WHERE code = ?", (code,)).fetchone()
    return row[0] if row else None
