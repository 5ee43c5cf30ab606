"""The media the genmedia server makes with no cloud account: Graphviz diagrams, matplotlib charts,
espeak-ng speech. Each renderer returns bytes or raises MediaError saying what to fix.

The binaries run as subprocesses with a deadline and bounded output (`runtime.capture.execute`), in
a fresh temporary directory, with a bare environment; Graphviz runs in its web-server mode, where it
loads no file a DOT text names (`image=`, `shapefile=`), so a DOT text cannot pull files of this
machine into its picture.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentfleet.errors import AgentFleetError
from agentfleet.runtime.capture import execute

MAX_OUTPUT_BYTES = 20 * 1024 * 1024
"""The largest picture or sound kept; a bigger one is refused."""
MAX_DOT_CHARS = 200_000
MAX_SPEECH_CHARS = 5_000
MAX_POINTS = 10_000
DIAGNOSTIC_CHARS = 4_000
VOICE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]+)*$")
INSTALL_HINT = {"dot": "apt-get install graphviz (make system-deps)", "espeak-ng": "apt-get install espeak-ng"}


class MediaError(AgentFleetError, ValueError):
    """The input cannot be rendered (bad DOT, bad data, too big); the message says what to change."""


class MediaToolMissingError(AgentFleetError, RuntimeError):
    """A binary the renderer needs is not installed; the message says how to install it."""


class Series(BaseModel):
    """One series of a chart: `y` values, with `x` positions or labels (default 0, 1, 2, …)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="legend label")
    x: list[float] | list[str] | None = Field(None, description="x values (numbers, or category labels for bar)")
    y: list[float] = Field(min_length=1, max_length=MAX_POINTS, description="y values")

    @model_validator(mode="after")
    def _same_length(self) -> Series:
        if self.x is not None and len(self.x) != len(self.y):
            raise ValueError(f"series {self.name!r}: x has {len(self.x)} values and y {len(self.y)}; give as many")
        return self


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaToolMissingError(f"{name} is not installed here: {INSTALL_HINT[name]}")
    return path


def _run(argv: list[str], workdir: Path, timeout_s: float, what: str) -> None:
    # SERVER_NAME with no GV_FILE_PATH: Graphviz's web-server mode, which loads no file a DOT text names.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "SERVER_NAME": "agentfleet-genmedia"}
    result = execute(argv, env, str(workdir), timeout_s, DIAGNOSTIC_CHARS)
    if result.timed_out:
        raise MediaError(f"{what} took longer than {timeout_s:g}s and was stopped; make the input smaller")
    if result.exit_code != 0:
        said = result.output.replace(f"{workdir}/", "").strip()[:DIAGNOSTIC_CHARS]
        raise MediaError(f"{what} failed (exit code {result.exit_code}): {said}")


def _read_output(path: Path, what: str) -> bytes:
    if not path.is_file() or path.stat().st_size == 0:
        raise MediaError(f"{what} wrote nothing")
    if path.stat().st_size > MAX_OUTPUT_BYTES:
        raise MediaError(f"{what} is over {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB; make it smaller")
    return path.read_bytes()


def render_dot(dot: str, fmt: Literal["png", "svg"] = "png", layout: str = "dot", timeout_s: float = 30) -> bytes:
    """The DOT text drawn by Graphviz as PNG or SVG."""
    if not dot.strip():
        raise MediaError("the DOT text is empty; give a graph such as 'digraph { a -> b }'")
    if len(dot) > MAX_DOT_CHARS:
        raise MediaError(f"the DOT text is {len(dot)} characters; at most {MAX_DOT_CHARS}")
    if layout not in {"dot", "neato", "fdp", "sfdp", "circo", "twopi"}:
        raise MediaError(f"unknown layout {layout!r}: use dot, neato, fdp, sfdp, circo or twopi")
    dot_bin = _binary("dot")
    with tempfile.TemporaryDirectory(prefix="genmedia-") as tmp:
        work = Path(tmp)
        (work / "in.dot").write_text(dot, encoding="utf-8")
        out = work / f"out.{fmt}"
        argv = [dot_bin, f"-K{layout}", f"-T{fmt}", "-o", str(out), str(work / "in.dot")]
        try:
            _run(argv, work, timeout_s, "Graphviz")
        except MediaError as exc:
            raise MediaError(f"the DOT text does not render: {exc}") from None
        return _read_output(out, "the diagram")


def render_chart(
    kind: Literal["bar", "line", "scatter"],
    series: list[Series],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
) -> bytes:
    """A PNG chart of the series, drawn by matplotlib (Agg, no display)."""
    if not series:
        raise MediaError("give at least one series, e.g. [{'name': 'a', 'y': [1, 2, 3]}]")
    if sum(len(s.y) for s in series) > MAX_POINTS:
        raise MediaError(f"the chart has more than {MAX_POINTS} points; aggregate the data first")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        xs: list[float] | list[str] = s.x if s.x is not None else [float(j) for j in range(len(s.y))]
        label = s.name or None
        if kind == "bar":
            categories = [str(x) for x in s.x] if s.x is not None else [str(j) for j in range(len(s.y))]
            positions = [j + (i - (len(series) - 1) / 2) * width for j in range(len(categories))]
            axes.bar(positions, s.y, width=width, label=label)
            axes.set_xticks(range(len(categories)), categories)
        elif any(isinstance(x, str) for x in xs):
            raise MediaError(f"series {s.name!r}: a {kind} chart needs numeric x values (labels suit a bar chart)")
        elif kind == "line":
            axes.plot(xs, s.y, marker="o", label=label)
        else:
            axes.scatter(xs, s.y, label=label)
    axes.set_title(title[:200])
    axes.set_xlabel(x_label[:200])
    axes.set_ylabel(y_label[:200])
    if any(s.name for s in series):
        axes.legend()
    axes.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def speak(text: str, voice: str = "en", words_per_minute: int = 160, timeout_s: float = 60) -> bytes:
    """`text` spoken by espeak-ng, as a WAV file."""
    if not text.strip():
        raise MediaError("the text to speak is empty")
    if len(text) > MAX_SPEECH_CHARS:
        raise MediaError(f"the text is {len(text)} characters; at most {MAX_SPEECH_CHARS} per call")
    if not VOICE.match(voice):
        raise MediaError(f"voice {voice!r} is not a voice name; use a language code such as en, en-us, de, fr")
    espeak = _binary("espeak-ng")
    with tempfile.TemporaryDirectory(prefix="genmedia-") as tmp:
        work = Path(tmp)
        (work / "in.txt").write_text(text, encoding="utf-8")
        out = work / "out.wav"
        speed = str(min(max(words_per_minute, 80), 450))
        _run(
            [espeak, "-v", voice, "-s", speed, "-w", str(out), "-f", str(work / "in.txt")], work, timeout_s, "espeak-ng"
        )
        return _read_output(out, "the speech")
