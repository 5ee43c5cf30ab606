"""Images and speech from Vertex AI, through the official `google-genai` client.

Images: `models.generate_images` with an Imagen model (PNG bytes back). Speech: `models.generate_content`
with `response_modalities=["AUDIO"]` and a `SpeechConfig` naming a prebuilt voice; the model answers
with raw 16-bit PCM (`audio/L16;rate=24000`), which is wrapped here as a WAV file.

The client is passed in (a fake in the tests: this path cannot be called offline); `from_settings`
builds the real one for PROJECT_ID and REGION with the machine's application default credentials.
What the service refuses or fails becomes one of `gcp.errors`' family, with what to change.
"""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx
from google.auth import exceptions as auth_exceptions
from google.genai import errors as genai_errors
from google.genai import types

from agentfleet.gcp.errors import GcpRefusedError, GcpTimeoutError, GcpUnavailableError

DEFAULT_IMAGE_MODEL = "imagen-4.0-generate-001"
DEFAULT_SPEECH_MODEL = "gemini-2.5-flash-preview-tts"
DEFAULT_VOICE = "Kore"
ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
PCM_RATE = re.compile(r"rate=(\d+)")


class GenaiModels(Protocol):
    """The part of `google.genai.Client().models` this module calls."""

    def generate_images(self, *, model: str, prompt: str, config: Any = None) -> Any: ...

    def generate_content(self, *, model: str, contents: Any, config: Any = None) -> Any: ...


class GenaiClient(Protocol):
    @property
    def models(self) -> GenaiModels: ...


class VertexMedia:
    """Imagen pictures and Gemini speech for one project and region."""

    def __init__(
        self,
        client: GenaiClient,
        *,
        image_model: str = DEFAULT_IMAGE_MODEL,
        speech_model: str = DEFAULT_SPEECH_MODEL,
    ) -> None:
        self.client = client
        self.image_model = image_model
        self.speech_model = speech_model

    @classmethod
    def create(cls, project: str, region: str, timeout_s: float = 120, **models: str) -> VertexMedia:
        from google import genai

        client = genai.Client(
            vertexai=True,
            project=project,
            location=region,
            http_options=types.HttpOptions(timeout=int(timeout_s * 1000)),
        )
        return cls(client, **models)

    def image(self, prompt: str, aspect_ratio: str = "1:1", negative_prompt: str | None = None) -> bytes:
        """One PNG picture of `prompt`."""
        if aspect_ratio not in ASPECT_RATIOS:
            raise ValueError(f"aspect_ratio {aspect_ratio!r}: use one of {', '.join(ASPECT_RATIOS)}")
        config = types.GenerateImagesConfig(
            number_of_images=1,
            aspect_ratio=aspect_ratio,
            negative_prompt=negative_prompt or None,
            output_mime_type="image/png",
            include_rai_reason=True,
        )
        with _translated(f"Imagen ({self.image_model})"):
            response = self.client.models.generate_images(model=self.image_model, prompt=prompt, config=config)
        for generated in response.generated_images or []:
            if generated.image is not None and generated.image.image_bytes:
                return bytes(generated.image.image_bytes)
            if generated.rai_filtered_reason:
                raise GcpRefusedError(
                    f"Imagen filtered the picture: {generated.rai_filtered_reason}; reword the prompt"
                )
        raise GcpRefusedError("Imagen returned no picture (the prompt may have been filtered); reword the prompt")

    def speech(self, text: str, voice: str = DEFAULT_VOICE) -> bytes:
        """`text` spoken with a prebuilt voice, as a WAV file."""
        config = types.GenerateContentConfig(
            response_modalities=["AUDIO"],
            speech_config=types.SpeechConfig(
                voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=voice))
            ),
        )
        with _translated(f"Gemini speech ({self.speech_model})"):
            response = self.client.models.generate_content(model=self.speech_model, contents=text, config=config)
        for candidate in response.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                blob = part.inline_data
                if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/"):
                    return _as_wav(bytes(blob.data), blob.mime_type or "")
        raise GcpRefusedError("the speech model returned no audio; check the model name and the voice")


def _as_wav(data: bytes, mime_type: str) -> bytes:
    """WAV bytes as they are; raw 16-bit mono PCM (`audio/L16;rate=N`, `audio/pcm`) wrapped in a WAV header."""
    if data[:4] == b"RIFF":
        return data
    match = PCM_RATE.search(mime_type)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(match.group(1)) if match else 24000)
        out.writeframes(data)
    return buffer.getvalue()


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """The client's errors as the gcp family: 4xx refused (with what to change); 429, 5xx, timeouts and
    an unreachable service unavailable (a retry may help)."""
    try:
        yield
    except genai_errors.APIError as exc:
        detail = f"{what}: {exc.code} {exc.status or ''} {exc.message or ''}".strip()
        if exc.code in (401, 403):
            raise GcpRefusedError(f"{detail}; the service account needs roles/aiplatform.user on PROJECT_ID") from exc
        if exc.code == 404:
            raise GcpRefusedError(f"{detail}; check the model name and that REGION offers it") from exc
        if exc.code == 429 or exc.code >= 500:
            raise GcpUnavailableError(f"{detail}; try again later") from exc
        raise GcpRefusedError(detail) from exc
    except auth_exceptions.DefaultCredentialsError as exc:
        raise GcpRefusedError(f"{what}: no Google credentials here (gcloud auth application-default login)") from exc
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise GcpTimeoutError(f"{what} did not answer in time; try again") from exc
    except (httpx.TransportError, auth_exceptions.TransportError, OSError) as exc:
        raise GcpUnavailableError(f"{what} could not be reached: {type(exc).__name__}") from exc
