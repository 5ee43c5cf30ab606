from billing.errors import QuotaError


def remaining(quota: int, used: int) -> int:
    return max(quota - used, 0)


def check_quota(account: str, quota: int, used: int) -> None:
    if used > quota:
        raise QuotaError(f"quota exceeded for {account}: {used} > {quota}")
