"""The tests' own helpers: ports handed to Ray nodes never collide."""

from __future__ import annotations

from support.ray_cluster import RayHead, RayWorker
from support.s3servers import free_ports


def test_free_ports_are_distinct_and_keep_off_the_avoided():
    first = free_ports(40)
    assert len(set(first)) == 40
    second = free_ports(40, avoid=frozenset(first))
    assert len(set(second)) == 40
    assert not set(first) & set(second)


def _ports_named(command: list[str]) -> list[int]:
    return [int(arg.split("=")[1]) for arg in command if arg.startswith("--") and arg.split("=")[0].endswith("port")]


def test_a_head_and_a_worker_name_every_port_and_share_none():
    head = RayHead()
    worker = RayWorker(head)
    try:
        head_ports = _ports_named(head._command())
        worker_ports = _ports_named(worker._command())
        assert len(head_ports) == 9 and len(set(head_ports)) == 9
        assert len(worker_ports) == 6 and len(set(worker_ports)) == 6
        assert not set(head_ports) & set(worker_ports)
    finally:
        head.stop()  # never started: removes its temp dir
        worker.stop()
