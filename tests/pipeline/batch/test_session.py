"""The Ray session: a local cluster the product starts is closed (token auth on, loopback only)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from pipeline.batch.session import LOOPBACK_EXCEPTIONS, local_ray_env, local_ray_init_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for LISTEN

# Runs in a subprocess: it starts (and shuts down) its own cluster, never touching the test session's Ray.
EXPERIMENT = r"""
import os, subprocess, sys
os.environ.pop("RAY_AUTH_MODE", None)
os.environ.pop("RAY_AUTH_TOKEN", None)
from pipeline.batch.session import start_local_ray
import ray
ctx = start_local_ray(num_cpus=1, object_store_memory=80 * 2**20, log_to_driver=False)
try:
    @ray.remote
    def env():
        return os.environ.get("RAY_AUTH_MODE")
    print("worker-auth-mode", ray.get(env.remote()))
    print("node-ip", ctx.address_info["node_ip_address"])
    attach = "import ray; ray.init(address=%r); print('ATTACHED')" % ctx.address_info["gcs_address"]
    for label, change in (("wrong-token", {"RAY_AUTH_TOKEN": "0" * 64}), ("auth-off", {"RAY_AUTH_MODE": "disabled"}),
                          ("right-token", {})):
        # A process on this machine attaching to a loopback node must be in Ray's single-machine mode too.
        child = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **change)
        if label == "auth-off":
            child.pop("RAY_AUTH_TOKEN")
        out = subprocess.run([sys.executable, "-c", attach], env=child, capture_output=True, text=True, timeout=120)
        print(label, "ATTACHED" in out.stdout)
    # Every Ray process of this run has started by now (a worker ran a task, a driver attached).
    print("listening", json.dumps(listening_sockets(os.getpid())))
finally:
    ray.shutdown()
print("token-file", os.path.exists(os.path.expanduser("~/.ray/auth_token")))
print("single-machine-mode-after", ray._private.ray_constants.ENABLE_RAY_CLUSTER)
"""


def _process_tree(root: int) -> set[int]:
    """root and every process descended from it (Ray's daemons and workers of a local run)."""
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return tree


def _socket_owners(pids: set[int]) -> dict[str, str]:
    """socket inode -> 'pid command' for the sockets the given processes hold."""
    owners = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            # The program's own name first: a long venv path would push "gcs_server" past the cut.
            name = " ".join([os.path.basename(argv[0]), *argv[1:]])[:80].strip()
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[link[8:-1]] = f"{pid} {name}"
    return owners


def _address(hex_ip: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host order, little-endian here)."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(root: int) -> list[tuple[str, int, str]]:
    """(address, port, 'pid command') of every listening TCP socket of root's process tree."""
    owners = _socket_owners(_process_tree(root))
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == TCP_LISTEN and fields[9] in owners:
                    hex_ip, hex_port = fields[1].split(":")
                    found.append((_address(hex_ip), int(hex_port, 16), owners[fields[9]]))
    return sorted(found)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1, how Ray's gRPC servers bind a 127.0.0.1 node address
    return ip.is_loopback


def test_env_turns_token_auth_on_and_never_off():
    env = local_ray_env({"RAY_AUTH_MODE": "disabled"})
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 64
    assert local_ray_env({})["RAY_AUTH_TOKEN"] != env["RAY_AUTH_TOKEN"]  # a fresh token per run
    assert "RAY_AUTH_TOKEN" not in local_ray_env({"RAY_AUTH_TOKEN": "given"})
    kwargs = local_ray_init_kwargs()
    assert kwargs["include_dashboard"] is False and kwargs["dashboard_host"] == "127.0.0.1"
    assert kwargs["_node_ip_address"] == "127.0.0.1"
    assert local_ray_init_kwargs(dashboard=True)["include_dashboard"] is True


def test_loopback_check_tells_loopback_from_every_interface():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.2")
    assert _address("0100007F") == "127.0.0.1"
    mapped = ipaddress.ip_address(_address("0000000000000000FFFF00000100007F"))
    assert mapped.ipv4_mapped == ipaddress.ip_address("127.0.0.1") and is_loopback(str(mapped))
    assert _address("00000000000000000000000000000000") == "::"


@pytest.mark.slow
def test_a_local_cluster_listens_on_loopback_only_and_refuses_processes_without_its_token():
    had_token_file = os.path.exists(os.path.expanduser("~/.ray/auth_token"))
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, here]), RAY_USAGE_STATS_ENABLED="0")
    code = "import json\nfrom test_session import listening_sockets\n" + EXPERIMENT
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert out.returncode == 0, out.stderr[-2000:]
    assert lines["worker-auth-mode"] == "token"
    assert lines["wrong-token"] == "False" and lines["auth-off"] == "False" and lines["right-token"] == "True"
    if not had_token_file:
        assert lines["token-file"] == "False"  # the per-run token is never written to ~/.ray
    assert lines["node-ip"] == "127.0.0.1"
    assert lines["single-machine-mode-after"] == "True"  # Ray's switch is back as it was for later ray.init calls

    sockets = json.loads(lines["listening"])
    owners = " ".join(owner for _, _, owner in sockets)
    for name in ("gcs_server", "raylet"):  # the daemons were seen (agents' names differ between Ray releases)
        assert name in owners, sockets
    open_ = [s for s in sockets if not is_loopback(s[0]) and not any(e in s[2] for e in LOOPBACK_EXCEPTIONS)]
    assert not open_, f"listening beyond loopback: {open_}"
