class BillingError(Exception):
    """Base of billing errors."""


class QuotaError(BillingError):
    """An account used more than it may."""
