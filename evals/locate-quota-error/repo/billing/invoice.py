from billing.limits import check_quota


def invoice(account: str, quota: int, used: int, price: float) -> float:
    check_quota(account, quota, used)
    return round(used * price, 2)
