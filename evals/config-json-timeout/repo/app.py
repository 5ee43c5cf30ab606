import json

with open("config/app.json") as fh:
    CONFIG = json.load(fh)


def timeout() -> float:
    return float(CONFIG["timeout_s"])
