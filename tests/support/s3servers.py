"""S3 servers on 127.0.0.1 for tests: a moto_server subprocess, or a Ceph RGW that CI started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

# moto answers in ~0.4 s; the limit only guards against a hung or crashed start.
MOTO_START_TIMEOUT_S = 30.0
CEPH_ENV = "BARKPIPE_CEPH_ENDPOINT"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual bind-to-0 trick)."""
    return free_ports(1)[0]


def free_ports(count: int, avoid: frozenset[int] = frozenset()) -> list[int]:
    """count distinct TCP ports free on 127.0.0.1 right now, none of them in avoid.

    All sockets stay bound until every port is chosen: one free_port() after another may hand
    out a port twice, since the kernel reuses a port as soon as its socket closes.
    """
    held: list[socket.socket] = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def http_answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when anything HTTP answers at url (an error status still means the server is up)."""
    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class S3Endpoint:
    """Where a test S3 server listens and the credentials it accepts."""

    endpoint_url: str
    key: str
    secret: str

    @property
    def storage_options(self) -> dict:
        """Keyword arguments for s3fs.S3FileSystem / the pipeline's storage_options."""
        # No region_name: with it s3fs.mkdir sends LocationConstraint=us-east-1, which
        # moto and RGW reject with InvalidLocationConstraint.
        return {"key": self.key, "secret": self.secret,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def filesystem(self):
        """A fresh s3fs filesystem on this endpoint, without listing cache (tests read after writes)."""
        import s3fs

        return s3fs.S3FileSystem(use_listings_cache=False, **self.storage_options)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name when none is given, so tests never share state)."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT` as a subprocess (its own GIL, unlike ThreadedMotoServer)."""

    def __init__(self, key: str = "testing", secret: str = "testing"):
        self.port = free_port()
        self.endpoint = S3Endpoint(f"http://127.0.0.1:{self.port}", key, secret)
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)

    def _command(self) -> list[str]:
        # `python -m moto.server` runs the moto installed for this interpreter (the venv's);
        # the script next to the interpreter is the fallback for installs without it.
        import importlib.util

        if importlib.util.find_spec("moto.server") is not None:
            return [sys.executable, "-m", "moto.server"]
        script = Path(sys.executable).with_name("moto_server")
        if script.exists():
            return [str(script)]
        found = shutil.which("moto_server")
        if found is None:
            raise FileNotFoundError("moto server not found: install the test extra ('moto[server]')")
        return [found]

    def start(self) -> S3Endpoint:
        cmd = [*self._command(), "-H", "127.0.0.1", "-p", str(self.port)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + MOTO_START_TIMEOUT_S
        while not http_answers(self.endpoint.endpoint_url + "/moto-api/"):
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"moto_server did not answer on {self.endpoint.endpoint_url} "
                                   f"within {MOTO_START_TIMEOUT_S:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)
        return self.endpoint

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._log.close()
        os.unlink(self._log.name)

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ceph_from_env() -> S3Endpoint | None:
    """The Ceph RGW named by BARKPIPE_CEPH_ENDPOINT (started by scripts/ceph_up.sh), or None."""
    url = os.environ.get(CEPH_ENV, "").strip()
    if not url:
        return None
    endpoint = S3Endpoint(url.rstrip("/"), os.environ.get("BARKPIPE_CEPH_KEY", "testing"),
                          os.environ.get("BARKPIPE_CEPH_SECRET", "testing"))
    # Set but silent is a broken CI setup, not a reason to skip: fail loudly.
    if not http_answers(endpoint.endpoint_url + "/"):
        raise RuntimeError(f"{CEPH_ENV}={url} but nothing answers there; "
                           "start it with scripts/ceph_up.sh or unset the variable")
    return endpoint
