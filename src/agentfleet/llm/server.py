"""The embedded model's server process, both ends of it.

`EmbeddedServer` (the parent's side) starts `python -m agentfleet.llm.server`, waits for
/health, and stops it. The child runs llama.cpp's OpenAI-compatible server (through xllamacpp) for
one GGUF file on 127.0.0.1; llama.cpp runs on native threads, which is why it gets its own
process. The child serves until its stdin reaches end of file: the parent closed it to stop the
server, or the parent died.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

from agentfleet.errors import AgentFleetError
from agentfleet.net import free_port

HOST = "127.0.0.1"
EXIT_LOAD_FAILED = 3
EXIT_NO_RUNTIME = 4
READY = "agentfleet-llm-server: serving"  # printed once llama.cpp has loaded the model and bound the port


class ModelUnavailableError(AgentFleetError, RuntimeError):
    """The embedded model cannot be assembled or started; the message says what to do."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset and container CPU sets
    except AttributeError:
        return os.cpu_count() or 1


def _healthy(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


def _shut_down(proc: subprocess.Popen[bytes]) -> int:
    """Close the child's stdin so it stops llama.cpp and exits; SIGTERM, then SIGKILL, if it hangs."""
    with contextlib.suppress(OSError):  # a dead child leaves a broken pipe
        if proc.stdin:
            proc.stdin.close()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


class EmbeddedServer:
    """llama.cpp's server for one GGUF file in a child process; a context manager."""

    def __init__(
        self,
        model_path: Path,
        *,
        port: int | None = None,
        n_ctx: int = 8192,
        threads: int = 0,
        alias: str | None = None,
        startup_timeout_s: float = 120,
    ) -> None:
        self.model_path = model_path
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}/v1"
        self.n_ctx = n_ctx
        self.threads = threads or _cpu_count()
        self.alias = alias or model_path.stem
        self.startup_timeout_s = startup_timeout_s
        self.returncode: int | None = None  # the child's exit status, once stopped
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedServer:
        """Start the child and wait until /health answers; raise ModelUnavailableError if it cannot."""
        if self._proc is not None:
            return self
        if not self.model_path.is_file():
            raise ModelUnavailableError(f"model file {self.model_path} does not exist")
        if importlib.util.find_spec("xllamacpp") is None:
            raise ModelUnavailableError("the embedded model runtime is missing: pip install 'agentfleet[embedded]'")
        # llama.cpp's stderr; unnamed, so nothing is left behind. Closed in stop().
        self._log = tempfile.TemporaryFile(prefix="agentfleet-llm-", suffix=".log")  # noqa: SIM115
        args = ["--model", str(self.model_path), "--port", str(self.port), "--ctx", str(self.n_ctx)]
        args += ["--threads", str(self.threads), "--alias", self.alias]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "agentfleet.llm.server", *args],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops the child cleanly
        )
        try:
            self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Poll /health (503 while loading, 200 when ready) until the deadline or the child's exit."""
        deadline = time.monotonic() + self.startup_timeout_s
        health = self.url.removesuffix("/v1") + "/health"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise self._exit_error(proc.returncode)
                if READY in self._read_log() and _healthy(client, health):
                    return  # the marker proves that whoever answers on the port is our child
                if time.monotonic() > deadline:
                    raise ModelUnavailableError(
                        f"the embedded model did not become ready within {self.startup_timeout_s:.0f} s"
                        f"{self._log_tail()}"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.1)  # a bounded pause that ends early if the child exits

    def _exit_error(self, code: int) -> ModelUnavailableError:
        tail = self._log_tail()
        if "couldn't bind" in tail:
            hint = f"port {self.port} is already in use; pick another with --port"
        elif code == -signal.SIGKILL or any(
            s in tail.lower() for s in ("out of memory", "failed to allocate", "bad_alloc")
        ):
            hint = (
                "the machine ran out of memory loading the model; free some memory, or pick the smaller "
                "qwen2.5-coder-0.5b (AGENTFLEET_EMBEDDED_MODEL) or a smaller AGENTFLEET_EMBEDDED_CTX"
            )
        elif code == EXIT_NO_RUNTIME:
            hint = "the runtime is missing: pip install 'agentfleet[embedded]'"
        else:
            hint = f"llama.cpp could not load {self.model_path}"
        return ModelUnavailableError(f"the embedded model server exited with code {code}: {hint}{tail}")

    def _read_log(self, limit: int = 1 << 20) -> str:
        """The last `limit` bytes of the child's output, read without moving the shared file offset."""
        if self._log is None:
            return ""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        return os.pread(fd, limit, max(0, size - limit)).decode(errors="replace")

    def _log_tail(self) -> str:
        text = self._read_log(3000).strip()
        return f"\n--- llama.cpp log (end) ---\n{text}" if text else ""

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the child and release its log; safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self.returncode = _shut_down(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The child process.


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentfleet.llm.server", description=__doc__)
    parser.add_argument("--model", required=True, help="Path of the GGUF file")
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1")
    parser.add_argument("--ctx", type=int, default=8192, help="Context window in tokens")
    parser.add_argument("--threads", type=int, required=True, help="CPU threads")
    parser.add_argument("--alias", required=True, help="Model name reported by /v1/models")
    return parser.parse_args(argv)


def _params(xllamacpp: Any, args: argparse.Namespace) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [HOST]
    params.port = args.port
    params.n_ctx = args.ctx  # 0 would mean the model's full 32k context: a large KV cache
    params.n_parallel = 1  # one slot gets the whole context
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = 1  # warnings and errors only; 3 logs every request
    params.ui = False  # the API only, no web page
    return params


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        import xllamacpp
    except ImportError:
        print("xllamacpp is not installed: pip install 'agentfleet[embedded]'", file=sys.stderr)
        return EXIT_NO_RUNTIME
    try:
        server = xllamacpp.Server(_params(xllamacpp, args))  # returns once the model is loaded
    except RuntimeError as exc:
        print(f"llm_server: {exc}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    print(f"{READY} {args.alias} at {server.listening_address}", flush=True)
    while sys.stdin.buffer.read(4096):
        pass  # nothing is ever sent; end of file is the signal to stop
    # Nothing to save: exit at once. llama.cpp's own shutdown (`del server`) can wait forever on a
    # request that was being generated when the parent died, leaving an orphan holding the model.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
