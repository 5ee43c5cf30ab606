"""Which model endpoint a local entry point talks to: GPT_OSS_URL when set, otherwise the
embedded CPU model, started here and stopped when the work is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from agentfleet.settings import Settings

EMBEDDED_TIMEOUT_S = 1800.0
"""The least silence allowed to a CPU model: reading a long prompt takes it minutes before a first token."""


@contextmanager
def model_endpoint(settings: Settings, say: Callable[[str], None], model: str | None = None) -> Iterator[Settings]:
    """Settings whose `gpt_oss_url` points at a live model for the duration of the block."""
    if settings.gpt_oss_url:
        yield settings
        return
    from agentfleet.llm.embedded import serve_embedded

    name = model or settings.embedded_model
    say(f"GPT_OSS_URL is not set: starting the embedded model {name} on this machine (CPU, no key needed)")
    with serve_embedded(settings, name, progress=say) as server:
        cpu = {"llm_timeout_s": max(settings.llm_timeout_s, EMBEDDED_TIMEOUT_S), "llm_embedded": True}
        yield settings.model_copy(update={"gpt_oss_url": server.url, "model": name, **cpu})
