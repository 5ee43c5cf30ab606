"""The media generation MCP server: diagrams, charts, speech and pictures, kept as artifacts.

Each tool writes what it made to the ArtifactStore (a directory locally, the bucket in the cloud)
and answers with a line saying where, an MCP resource link to it (a file:// URI locally, gs:// in
the cloud) and, for a picture, the PNG itself as an image content item.

Offline (the default): diagrams from Graphviz DOT text, charts with matplotlib, speech with
espeak-ng. With `--vertex` (or AGENTFLEET_BACKEND=gcp), speech comes from Gemini and pictures from
Imagen on Vertex AI in PROJECT_ID/REGION; pictures exist only there.

    python -m agentfleet.mcp_servers.genmedia [--vertex] [--transport stdio|streamable-http]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ContentBlock

from agentfleet.errors import AgentFleetError
from agentfleet.mcp_servers import media_offline
from agentfleet.mcp_servers.media_offline import Series
from agentfleet.mcp_servers.results import new_key, stored
from agentfleet.mcp_servers.transport import add_transport_args, serve
from agentfleet.ports import ArtifactStore

if TYPE_CHECKING:
    from agentfleet.gcp.media import VertexMedia
    from agentfleet.settings import Settings

INSTRUCTIONS = (
    "Make diagrams (Graphviz DOT), charts (bar, line, scatter from data), speech (WAV) and, where "
    "the cloud is configured, pictures. Each result is stored; the answer gives its location."
)


@contextmanager
def readable_errors() -> Iterator[None]:
    """Our errors (and a rejected argument) as ToolError, whose message the model sees."""
    try:
        yield
    except (AgentFleetError, ValueError) as exc:
        raise ToolError(str(exc)) from exc


class Media:
    """The operations behind the tools, usable without MCP."""

    def __init__(self, store: ArtifactStore, prefix: str = "media", vertex: VertexMedia | None = None) -> None:
        self.store = store
        self.prefix = prefix.strip("/") or "media"
        self.vertex = vertex

    def _keep(self, kind: str, ext: str, data: bytes, what: str) -> list[ContentBlock]:
        with readable_errors():
            return stored(self.store, new_key(self.prefix, kind, ext), data, what)

    def _render(self, make: Callable[[], bytes]) -> bytes:
        with readable_errors():
            return make()

    def diagram(self, dot: str, fmt: Literal["png", "svg"] = "png", layout: str = "dot") -> list[ContentBlock]:
        data = self._render(lambda: media_offline.render_dot(dot, fmt, layout))
        return self._keep("diagram", fmt, data, "diagram")

    def chart(
        self,
        kind: Literal["bar", "line", "scatter"],
        series: list[Series],
        title: str = "",
        x_label: str = "",
        y_label: str = "",
    ) -> list[ContentBlock]:
        data = self._render(lambda: media_offline.render_chart(kind, series, title, x_label, y_label))
        return self._keep("chart", "png", data, f"{kind} chart")

    def speech(self, text: str, voice: str | None = None) -> list[ContentBlock]:
        vertex = self.vertex
        if vertex is not None:
            data = self._render(lambda: vertex.speech(text, voice or "Kore"))
        else:
            data = self._render(lambda: media_offline.speak(text, voice or "en"))
        return self._keep("speech", "wav", data, "speech")

    def image(self, prompt: str, aspect_ratio: str = "1:1", negative_prompt: str = "") -> list[ContentBlock]:
        vertex = self.vertex
        if vertex is None:
            raise ToolError(
                "pictures need Vertex AI, which this server is not configured for (start it with --vertex and "
                "PROJECT_ID/REGION); for a diagram use `diagram`, for data use `chart`"
            )
        if not prompt.strip():
            raise ToolError("the prompt is empty; describe the picture")
        data = self._render(lambda: vertex.image(prompt, aspect_ratio, negative_prompt or None))
        return self._keep("image", "png", data, "picture")


def build_server(media: Media, name: str = "genmedia") -> MCPServer:
    """The MCP server exposing a Media's operations as tools."""
    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(structured_output=False)
    def diagram(dot: str, format: Literal["png", "svg"] = "png", layout: str = "dot") -> list[ContentBlock]:
        """Draw a Graphviz DOT graph, e.g. 'digraph { api -> db; api -> cache }'.

        `layout`: dot (layered, the default), neato, fdp, sfdp, circo or twopi. Returns where the
        picture is stored, and the PNG itself.
        """
        return media.diagram(dot, format, layout)

    @server.tool(structured_output=False)
    def chart(
        kind: Literal["bar", "line", "scatter"],
        series: list[Series],
        title: str = "",
        x_label: str = "",
        y_label: str = "",
    ) -> list[ContentBlock]:
        """Plot data as a PNG chart. `series`: a list of {"name": "...", "x": [...], "y": [...]}
        (x optional; category labels for a bar chart). Returns where it is stored, and the PNG."""
        return media.chart(kind, series, title, x_label, y_label)

    @server.tool(structured_output=False)
    def speech(text: str, voice: str | None = None) -> list[ContentBlock]:
        """Speak `text` into a WAV file. `voice`: a language code offline (en, en-us, de, …; espeak-ng),
        a prebuilt voice name with Vertex AI (Kore, Puck, …). Returns where the WAV is stored."""
        return media.speech(text, voice)

    @server.tool(structured_output=False)
    def image(
        prompt: str, aspect_ratio: Literal["1:1", "3:4", "4:3", "9:16", "16:9"] = "1:1", negative_prompt: str = ""
    ) -> list[ContentBlock]:
        """Generate a picture from a description (Imagen on Vertex AI; not available offline)."""
        return media.image(prompt, aspect_ratio, negative_prompt)

    return server


def artifact_store(settings: Settings) -> ArtifactStore:
    """Just the ArtifactStore the settings choose (the bucket for gcp, the local directory otherwise)."""
    if settings.backend == "gcp":
        from agentfleet.gcp.artifacts import GcsArtifactStore

        return GcsArtifactStore.from_settings(settings)
    from agentfleet.local.artifacts import LocalArtifactStore

    return LocalArtifactStore(settings.artifacts_dir)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-genmedia-mcp", description=__doc__)
    add_transport_args(parser)
    parser.add_argument("--prefix", default="media", help="artifact key prefix of what is made (e.g. a task id)")
    parser.add_argument(
        "--vertex",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use Vertex AI for speech and pictures (default: when AGENTFLEET_BACKEND=gcp)",
    )
    parser.add_argument("--image-model", help="Imagen model (default: imagen-4.0-generate-001)")
    parser.add_argument("--speech-model", help="Gemini speech model (default: gemini-2.5-flash-preview-tts)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from agentfleet.settings import Settings

    args = _parse_args(argv)
    settings = Settings()
    vertex = None
    if args.vertex if args.vertex is not None else settings.backend == "gcp":
        from agentfleet.gcp.media import VertexMedia

        models = {k: v for k, v in {"image_model": args.image_model, "speech_model": args.speech_model}.items() if v}
        vertex = VertexMedia.create(settings.require("project_id"), settings.region, **models)
    server = build_server(Media(artifact_store(settings), args.prefix, vertex))
    serve(server, args)


if __name__ == "__main__":
    main()
