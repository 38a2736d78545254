"""Fixtures: real servers started by the tests, on free loopback ports, stopped at the end.

- llama_server: the llama-server this build was made with (CHIMERA_LLAMA_SERVER, else the
  build tree's CMakeCache.txt), serving the tiny synthetic model;
- synth / synth_stall / synth_503: `chimeraforge synth-server` (a fixed pace that does not
  slow down with load, with the server's send time in every chunk; and two with faults);
- tiny_model: the tiny GGUF (CHIMERA_TEST_MODEL_DIR, written with `chimeraforge model synth`
  when missing), for the in-process backend.

ctest passes the paths in the environment (tests/CMakeLists.txt); run by hand, the build tree
is found from where chimeraforge was imported (build/python/chimeraforge).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_dir() -> Optional[Path]:
    if os.environ.get("CHIMERA_BUILD_DIR"):
        return Path(os.environ["CHIMERA_BUILD_DIR"])
    try:
        import chimeraforge
    except ImportError:
        return None
    pkg = Path(chimeraforge.__file__).resolve().parent  # <build>/python/chimeraforge
    candidate = pkg.parent.parent
    return candidate if (candidate / "CMakeCache.txt").exists() else None


def _cache_value(build: Optional[Path], key: str) -> Optional[str]:
    if build is None:
        return None
    try:
        text = (build / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(rf"^{key}:[A-Z]+=(.*)$", text, re.M)
    return m.group(1) if m else None


BUILD = _build_dir()
CLI = os.environ.get("CHIMERA_CLI") or (
    str(BUILD / "apps/chimeraforge/chimeraforge") if BUILD else shutil.which("chimeraforge"))
LLAMA_SERVER = os.environ.get("CHIMERA_LLAMA_SERVER") or _cache_value(BUILD, "CHIMERA_LLAMA_SERVER") \
    or shutil.which("llama-server")
MODEL_DIR = Path(os.environ.get("CHIMERA_TEST_MODEL_DIR") or
                 (BUILD / "test-models" if BUILD else Path(tempfile.gettempdir()) / "chimera-models"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


class Server:
    """A child process, stopped (SIGTERM, then SIGKILL) by stop()."""

    def __init__(self, argv: List[str], name: str) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"chimera-{name}-", suffix=".log",
                                               delete=False)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.port = 0

    def log_text(self) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if self.port and http_get(self.url + "/health", 1.0)[0] == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not come up; its log:\n{self.log_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def start_synth(*flags: str, name: str = "synth") -> Server:
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip(f"chimeraforge CLI not found ({CLI}); set CHIMERA_CLI")
    srv = Server([CLI, "synth-server", "--port", "0", "--quiet", *flags], name)
    end = time.monotonic() + 20
    while time.monotonic() < end and not srv.port:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", srv.log_text())
        if m:
            srv.port = int(m.group(1))
        elif srv.proc.poll() is not None:
            break
        else:
            time.sleep(0.02)
    srv.wait_ready(20)
    return srv


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    path = MODEL_DIR / "tiny-seed42.gguf"
    if path.exists():
        return path
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("no tiny model and no chimeraforge CLI to write one")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    tmp = MODEL_DIR / f".tiny-{os.getpid()}.gguf"
    subprocess.run([CLI, "model", "synth", "--preset", "tiny", "--seed", "42", "--out", str(tmp)],
                   check=True, capture_output=True)
    os.replace(tmp, path)  # atomic: other test processes see the whole file or none
    return path


@pytest.fixture(scope="session")
def llama_server(tiny_model: Path) -> Iterator[Server]:
    if not LLAMA_SERVER or not os.access(LLAMA_SERVER, os.X_OK):
        pytest.skip(f"llama-server not found ({LLAMA_SERVER}); set CHIMERA_LLAMA_SERVER")
    last = ""
    for _ in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        srv = Server([LLAMA_SERVER, "-m", str(tiny_model), "--host", "127.0.0.1", "--port",
                      str(port), "-np", "4", "-c", "8192", "-t", "2", "--no-warmup",
                      "--cache-ram", "0", "--ignore-eos", "--no-webui"], "llama-server")
        srv.port = port
        try:
            srv.wait_ready(60)
        except RuntimeError as exc:
            last = str(exc)
            continue
        yield srv
        srv.stop()
        return
    raise RuntimeError(last)


def slots_busy(server: Server) -> Optional[bool]:
    """Whether any llama-server slot is processing (None: /slots did not answer)."""
    status, body = http_get(server.url + "/slots")
    if status != 200:
        return None
    return any(s.get("is_processing") for s in json.loads(body))


@pytest.fixture(scope="session")
def synth() -> Iterator[Server]:
    """First token at once, then 200 tokens/s, 16 tokens unless the request says."""
    srv = start_synth("--ttft-ms", "0", "--tokens-per-s", "200", "--tokens", "16")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def synth_stall() -> Iterator[Server]:
    """Stops sending after 2 tokens and keeps the connection open."""
    srv = start_synth("--tokens-per-s", "200", "--fault", "stall:2", name="synth-stall")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def synth_503() -> Iterator[Server]:
    srv = start_synth("--fault", "503", name="synth-503")
    yield srv
    srv.stop()
