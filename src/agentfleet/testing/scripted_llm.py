"""A scripted OpenAI-compatible chat-completions server for tests, demos and benchmarks.

It replays a list of assistant messages, one per request to POST /v1/chat/completions,
and records every request body it receives. A script entry is an assistant message in the
OpenAI shape (``content``, ``tool_calls``, and ``reasoning`` as vLLM returns a reasoning model's),
optionally with ``delay_s`` to answer late and ``stream_delay_s`` to stream it slowly (that long between two pieces), or
``{"error": {"status": 503, "message": "..."}}`` to fail that request. A script that runs out
answers HTTP 400 (a test's mistake: failing at once, not waiting for a model that is away).

    python -m agentfleet.testing.scripted_llm --port 0 --script script.json --record log.jsonl

One unit, over ~300 lines: one server (handler, script cursor, streaming) and its command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

MODEL_ID = "scripted"
COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")


def tool_call(name: str, arguments: dict, call_id: str | None = None) -> dict:
    """One OpenAI tool_call entry calling `name` with `arguments`."""
    return {
        "id": call_id or _new_id("call"),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def reply(content: str | None = None, *tool_calls: dict) -> dict:
    """One script entry: an assistant message with `content` and optional tool calls."""
    entry: dict[str, Any] = {"content": content}
    if tool_calls:
        entry["tool_calls"] = list(tool_calls)
    return entry


def look() -> dict:
    """A reply that lists the workspace's files: what a script does before its final answer, since an
    answer given without looking at anything is no answer."""
    return reply(None, tool_call("list_files", {}))


def load_script(path: Path) -> list[dict]:
    """Read a script file: a JSON list of entries (a bare string stands for its content)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: a script is a JSON list of assistant messages")
    entries = [{"content": item} if isinstance(item, str) else item for item in data]
    if not all(isinstance(item, dict) for item in entries):
        raise ValueError(f"{path}: every script entry must be an object or a string")
    return entries


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _error_body(message: str, kind: str = "server_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _tool_calls(raw: list[dict] | None) -> list[dict]:
    calls = []
    for call in raw or []:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments", "{}")
        function["arguments"] = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append({"id": call.get("id") or _new_id("call"), "type": "function", "function": function})
    return calls


def _usage(body: dict, content: str | None, calls: list[dict]) -> dict:
    prompt = len(json.dumps(body.get("messages", []))) // 4
    produced = (content or "") + "".join(call["function"].get("arguments", "") for call in calls)
    completion = max(1, len(produced) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict, entry: dict) -> dict:
    content, calls = entry.get("content"), _tool_calls(entry.get("tool_calls"))
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if entry.get("reasoning"):
        message["reasoning"] = entry["reasoning"]
    if calls:
        message["tool_calls"] = calls
    finish = "tool_calls" if calls else "stop"
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        "id": _new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or MODEL_ID,
        "choices": [choice],
        "usage": _usage(body, content, calls),
    }


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _stream_chunks(body: dict, completion: dict) -> Iterator[dict]:
    """The completion as OpenAI streaming chunks: role, content, tool calls, finish, usage."""
    base = {key: completion[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = completion["choices"][0]

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        return base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(choice["message"].get("reasoning") or ""):
        yield chunk({"reasoning": piece})
    for piece in _pieces(choice["message"]["content"] or ""):
        yield chunk({"content": piece})
    for index, call in enumerate(choice["message"].get("tool_calls", [])):
        head = {"name": call["function"].get("name", ""), "arguments": ""}
        yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": head}]})
        for piece in _pieces(call["function"].get("arguments", ""), 16):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, choice["finish_reason"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield base | {"choices": [], "usage": completion["usage"]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the stdlib's 5 drops connects from concurrent agents (a 1s SYN retry)

    def __init__(self, address: tuple[str, int], llm: ScriptedLLM) -> None:
        super().__init__(address, _Handler)
        self.llm = llm
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def hang_up(self) -> None:
        """Close every kept-alive connection, as a server that stops does."""
        with self._connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as an OpenAI-compatible server answers
    disable_nagle_algorithm = True  # headers and body are two writes: no wait for the client's delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read the recorded requests instead."""

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:
        path = self._path()
        if path == "/health":
            self._send_json(200, {"status": "ok"})
        elif path in MODEL_PATHS:
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "agentfleet"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error_body(f"no route for GET {path}", "not_found_error"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read first: the connection stays open
        if self._path() not in COMPLETION_PATHS:
            self._send_json(404, _error_body(f"no route for POST {self._path()}", "not_found_error"))
            return
        self.server.llm.raw_requests.append(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send_json(400, _error_body("request body must be a JSON object", "invalid_request_error"))
            return
        status, payload, pause = self.server.llm.answer(body, dict(self.headers.items()))
        if status == 200 and body.get("stream"):
            self._send_stream(_stream_chunks(body, payload), pause)
        else:
            self._send_json(status, payload)

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[dict], pause: float) -> None:
        """Server-sent events in HTTP/1.1 chunks, the connection kept open as vLLM's server keeps it:
        each event one chunk, written at once unless `pause` spaces them out."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks] + [b"data: [DONE]\n\n"]
        if not pause:
            self.wfile.write(b"".join(_chunk(event) for event in events) + _chunk(b""))
            return
        for i, event in enumerate(events):
            if i:
                time.sleep(pause)
            self.wfile.write(_chunk(event))
            self.wfile.flush()
        self.wfile.write(_chunk(b""))


def _chunk(data: bytes) -> bytes:
    """One chunk of HTTP/1.1's chunked transfer coding (the empty one ends the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ScriptedLLM:
    """An OpenAI-compatible server on `host`:`port` (0: a free port) that replays `script`."""

    load_script = staticmethod(load_script)

    def __init__(
        self,
        script: list[dict],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: Path | None = None,
        repeat_last: bool = False,
        per_turn: bool = False,
    ) -> None:
        """`per_turn`: answer each conversation by its own turn number (the count of assistant
        messages in the request) instead of one cursor shared by all requests, so any number of
        agents can run the same script at once."""
        self.script = list(script)
        self.per_turn = per_turn
        self.host, self.port = host, port
        self.record = Path(record) if record is not None else None
        self.repeat_last = repeat_last
        self.requests: list[dict] = []
        self.raw_requests: list[bytes] = []
        """Every POST body as the bytes that came (list.append is atomic: no lock needed)."""
        self.request_headers: list[dict[str, str]] = []
        self._cursor = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base_url for the openai client, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ScriptedLLM:
        """Bind the socket and serve in a background daemon thread."""
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.hang_up()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def answer(self, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict, float]:
        """Record `body` (and its `headers`, in `request_headers`) and answer it with the next script
        entry: (HTTP status, JSON payload, seconds between two streamed pieces)."""
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers or {})
            if self.record is not None:
                with self.record.open("a") as log:
                    log.write(json.dumps(body) + "\n")
                    log.flush()
            entry = self._turn_entry(body) if self.per_turn else self._next_entry()
        if entry is None:
            return 400, _error_body(f"script exhausted after {len(self.script)} replies", "invalid_request_error"), 0.0
        if entry.get("delay_s"):
            time.sleep(float(entry["delay_s"]))
        if "error" in entry:
            error = entry["error"] or {}
            message, kind = error.get("message", "scripted error"), error.get("type", "server_error")
            return int(error.get("status", 500)), _error_body(message, kind), 0.0
        return 200, _completion(body, entry), float(entry.get("stream_delay_s") or 0.0)

    def _turn_entry(self, body: dict) -> dict | None:
        messages = body.get("messages")
        if not isinstance(messages, list):
            messages = []
        turn = len([m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"])
        if turn < len(self.script):
            return self.script[turn]
        return self.script[-1] if self.repeat_last and self.script else None

    def _next_entry(self) -> dict | None:
        if self._cursor < len(self.script):
            self._cursor += 1
            return self.script[self._cursor - 1]
        return self.script[-1] if self.repeat_last and self.script else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agentfleet.testing.scripted_llm", description=__doc__)
    parser.add_argument("--script", type=Path, required=True, help="JSON list of assistant messages")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--record", type=Path, help="append each request body to this file as a JSON line")
    parser.add_argument("--repeat-last", action="store_true", help="repeat the last reply once exhausted")
    parser.add_argument(
        "--per-turn", action="store_true", help="answer each conversation by its turn number (concurrent agents)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Serve a script until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    options = {key: value for key, value in vars(args).items() if key != "script"}
    llm = ScriptedLLM(load_script(args.script), **options)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    with llm:
        print(f"scripted LLM listening on {llm.url}", file=sys.stderr, flush=True)
        while not stopping.wait(0.2):
            pass


if __name__ == "__main__":
    main()
