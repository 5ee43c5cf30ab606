"""The media generation server: in-process through the MCP client, once over streamable HTTP; the
Vertex AI path against a fake `google-genai` client (the real service cannot be called offline)."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from agentfleet.gcp.errors import GcpRefusedError, GcpUnavailableError
from agentfleet.gcp.media import VertexMedia
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.mcp_servers.genmedia import Media, build_server
from tests.mcp_servers.servers import http_server, need_binary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def dot() -> str:
    return need_binary("dot", "apt-get install graphviz, or make system-deps")


@pytest.fixture
def espeak() -> str:
    return need_binary("espeak-ng", "apt-get install espeak-ng, or make system-deps")


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def calls(media: Media, *steps: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    """The results of several tool calls in one session."""

    async def go() -> list[CallToolResult]:
        async with Client(build_server(media)) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments in steps]

    return anyio.run(go)


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def linked_file(result: CallToolResult) -> Path:
    (link,) = [b for b in result.content if isinstance(b, ResourceLink)]
    assert link.uri.startswith("file://")
    return Path(unquote(urlsplit(link.uri).path))


def test_the_server_offers_diagram_chart_speech_and_image(store) -> None:
    async def go() -> dict[str, Any]:
        async with Client(build_server(Media(store))) as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    tools = anyio.run(go)
    assert set(tools) == {"diagram", "chart", "speech", "image"}
    assert tools["diagram"]["required"] == ["dot"]
    assert tools["chart"]["properties"]["kind"]["enum"] == ["bar", "line", "scatter"]


def test_a_diagram_is_stored_as_an_artifact_and_shown_as_a_png(store, dot) -> None:
    (result,) = calls(Media(store), ("diagram", {"dot": "digraph { api -> db; api -> cache }"}))
    assert not result.is_error, text_of(result)
    path = linked_file(result)
    assert path.is_relative_to(store.root) and path.read_bytes().startswith(PNG_MAGIC)
    (image,) = [b for b in result.content if isinstance(b, ImageContent)]
    assert image.mime_type == "image/png" and base64.b64decode(image.data) == path.read_bytes()
    key = str(path.relative_to(store.root))
    assert f"artifact {key}" in text_of(result) and store.exists(key)


def test_a_diagram_as_svg_is_linked_but_not_shown(store, dot) -> None:
    (result,) = calls(Media(store), ("diagram", {"dot": "graph { a -- b }", "format": "svg", "layout": "neato"}))
    assert not result.is_error, text_of(result)
    assert b"<svg" in linked_file(result).read_bytes()
    assert not [b for b in result.content if isinstance(b, ImageContent)]


def test_dot_that_does_not_parse_is_a_tool_error_and_the_server_goes_on(store, dot) -> None:
    bad, unknown, good = calls(
        Media(store),
        ("diagram", {"dot": "digraph { a -> "}),
        ("diagram", {"dot": "digraph { a }", "layout": "rm -rf"}),
        ("diagram", {"dot": "digraph { a -> b }"}),
    )
    assert bad.is_error and "does not render" in text_of(bad) and "syntax error" in text_of(bad)
    assert "/tmp" not in text_of(bad), "the message names no temporary path"
    assert unknown.is_error and "unknown layout" in text_of(unknown)
    assert not good.is_error
    assert len(list(store.root.rglob("*.png"))) == 1, "a failed diagram stores nothing"


def test_a_dot_text_cannot_pull_a_file_of_the_machine_into_its_picture(store, dot, tmp_path) -> None:
    picture = tmp_path / "host-picture.png"
    (chart,) = calls(Media(store), ("chart", {"kind": "bar", "series": [{"y": [1, 2, 3]}]}))
    picture.write_bytes(linked_file(chart).read_bytes())
    plain, with_image = calls(
        Media(store),
        ("diagram", {"dot": 'digraph { a [label=""] }'}),
        ("diagram", {"dot": f'digraph {{ a [label="", image="{picture}"] }}'}),
    )
    assert not with_image.is_error, text_of(with_image)
    assert linked_file(with_image).read_bytes() == linked_file(plain).read_bytes()


def test_charts_are_drawn_from_series(store) -> None:
    results = calls(
        Media(store),
        ("chart", {"kind": "bar", "series": [{"name": "2025", "x": ["a", "b"], "y": [3, 5]}], "title": "T"}),
        ("chart", {"kind": "line", "series": [{"name": "p50", "x": [1, 2, 4], "y": [1, 4, 2]}, {"y": [2, 2, 2]}]}),
        ("chart", {"kind": "scatter", "series": [{"x": [0.5, 1.5], "y": [1, 2]}], "x_label": "x", "y_label": "y"}),
    )
    for result in results:
        assert not result.is_error, text_of(result)
        assert linked_file(result).read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "line", "series": [{"x": [1], "y": [1, 2]}]}, "x has 1 values and y 2"),
        ({"kind": "line", "series": [{"x": ["a", "b"], "y": [1, 2]}]}, "needs numeric x values"),
        ({"kind": "bar", "series": []}, "at least one series"),
        ({"kind": "pie", "series": [{"y": [1]}]}, "kind"),
    ],
)
def test_bad_chart_data_is_a_tool_error(store, arguments, message) -> None:
    bad, good = calls(Media(store), ("chart", arguments), ("chart", {"kind": "bar", "series": [{"y": [1]}]}))
    assert bad.is_error and message in text_of(bad)
    assert not good.is_error


def test_speech_is_a_wav_file_spoken_by_espeak(store, espeak) -> None:
    result, bad_voice, empty = calls(
        Media(store),
        ("speech", {"text": "The build passed."}),
        ("speech", {"text": "hello", "voice": "zz"}),
        ("speech", {"text": "  "}),
    )
    assert not result.is_error, text_of(result)
    with wave.open(str(linked_file(result))) as wav:
        assert wav.getnframes() / wav.getframerate() > 0.3
    assert not [b for b in result.content if isinstance(b, ImageContent)]
    assert bad_voice.is_error and "voice does not exist" in text_of(bad_voice)
    assert empty.is_error and "empty" in text_of(empty)


def test_a_picture_needs_vertex_ai_and_says_so(store) -> None:
    (result,) = calls(Media(store), ("image", {"prompt": "a lighthouse"}))
    assert result.is_error and "Vertex AI" in text_of(result) and "diagram" in text_of(result)


def test_the_server_runs_over_streamable_http(tmp_path, dot) -> None:
    home = tmp_path / "home"

    async def go(url: str) -> CallToolResult:
        async with Client(url) as client:
            return await client.call_tool("diagram", {"dot": "digraph { a -> b }"})

    with http_server("genmedia", "--prefix", "task-1", env={"AGENTFLEET_HOME": str(home)}) as url:
        result = anyio.run(go, url)
    assert not result.is_error, text_of(result)
    path = linked_file(result)
    assert path.parent == (home / "artifacts" / "task-1").resolve() and path.read_bytes().startswith(PNG_MAGIC)


# --- Vertex AI, through a fake google-genai client ------------------------------------------------


class FakeModels:
    def __init__(self, *, images: Any = None, content: Any = None, error: Exception | None = None) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.images, self.content, self.error = images, content, error

    def generate_images(self, **request: Any) -> Any:
        self.requests.append(("generate_images", request))
        if self.error:
            raise self.error
        return self.images

    def generate_content(self, **request: Any) -> Any:
        self.requests.append(("generate_content", request))
        if self.error:
            raise self.error
        return self.content


def vertex(models: FakeModels) -> VertexMedia:
    return VertexMedia(SimpleNamespace(models=models), image_model="imagen-x", speech_model="tts-x")


def test_a_picture_is_asked_of_imagen_and_stored(store) -> None:
    png = PNG_MAGIC + b"picture"
    models = FakeModels(
        images=types.GenerateImagesResponse(
            generated_images=[types.GeneratedImage(image=types.Image(image_bytes=png, mime_type="image/png"))]
        )
    )
    (result,) = calls(Media(store, vertex=vertex(models)), ("image", {"prompt": "a fox", "aspect_ratio": "16:9"}))
    assert not result.is_error, text_of(result)
    assert linked_file(result).read_bytes() == png
    ((method, request),) = models.requests
    assert method == "generate_images" and request["model"] == "imagen-x" and request["prompt"] == "a fox"
    config = request["config"]
    assert (config.number_of_images, config.aspect_ratio, config.output_mime_type) == (1, "16:9", "image/png")


def test_speech_is_asked_of_gemini_with_a_voice_and_its_pcm_becomes_a_wav(store) -> None:
    pcm = b"\x00\x01" * 2400
    part = types.Part(inline_data=types.Blob(data=pcm, mime_type="audio/L16;codec=pcm;rate=24000"))
    response = types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(role="model", parts=[part]))]
    )
    models = FakeModels(content=response)
    (result,) = calls(Media(store, vertex=vertex(models)), ("speech", {"text": "Deployed.", "voice": "Puck"}))
    assert not result.is_error, text_of(result)
    with wave.open(io.BytesIO(linked_file(result).read_bytes())) as wav:
        assert (wav.getframerate(), wav.getnframes(), wav.getsampwidth()) == (24000, 2400, 2)
    ((method, request),) = models.requests
    assert method == "generate_content" and request["model"] == "tts-x" and request["contents"] == "Deployed."
    config = request["config"]
    assert config.response_modalities == ["AUDIO"]
    assert config.speech_config.voice_config.prebuilt_voice_config.voice_name == "Puck"


@pytest.mark.parametrize(
    ("code", "kind", "hint"),
    [
        (403, GcpRefusedError, "roles/aiplatform.user"),
        (404, GcpRefusedError, "model name"),
        (400, GcpRefusedError, "bad prompt"),
        (429, GcpUnavailableError, "try again later"),
        (503, GcpUnavailableError, "try again later"),
    ],
)
def test_vertex_failures_say_what_to_do(code, kind, hint) -> None:
    error = genai_errors.APIError(code, {"error": {"code": code, "message": "bad prompt", "status": "X"}})
    with pytest.raises(kind, match=hint):
        vertex(FakeModels(error=error)).image("a fox")


def test_a_filtered_picture_and_an_unreachable_service_are_tool_errors(store) -> None:
    import httpx

    filtered = FakeModels(
        images=types.GenerateImagesResponse(generated_images=[types.GeneratedImage(rai_filtered_reason="violence")])
    )
    down = FakeModels(error=httpx.ConnectError("refused"))
    (a,) = calls(Media(store, vertex=vertex(filtered)), ("image", {"prompt": "a fight"}))
    (b,) = calls(Media(store, vertex=vertex(down)), ("speech", {"text": "hi"}))
    assert a.is_error and "filtered the picture: violence" in text_of(a)
    assert b.is_error and "could not be reached" in text_of(b)
    assert not list(store.root.rglob("*.*")), "nothing stored"
