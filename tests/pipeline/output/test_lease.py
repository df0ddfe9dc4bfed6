"""One writer per output: the lease refuses a second run, is renewed, goes stale, and is released."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipeline.output.layout import LEASE, MARKER
from pipeline.output.lease import (
    LeaseLost,
    OutputBusy,
    acquire_lease,
    clear_for_overwrite,
    mark_output,
    read_lease,
)
from pipeline.storage import Store, UnsafeOutput


def test_a_second_run_is_refused_naming_the_holder_until_the_first_releases(store):
    store.makedirs()
    first = acquire_lease(store, "run-A", ttl_s=60)
    with pytest.raises(OutputBusy) as err:
        acquire_lease(store, "run-B", ttl_s=60)
    message = str(err.value)
    assert "\n" not in message and "'run-A'" in message and "until 20" in message and LEASE in message
    first.release()
    assert read_lease(store) is None
    second = acquire_lease(store, "run-B", ttl_s=60)
    assert read_lease(store)["owner"] == "run-B"
    first.release()  # releasing a lease that is no longer ours leaves the new holder alone
    assert read_lease(store)["token"] == second.token
    second.release()


def test_a_stale_lease_is_taken_over_and_its_old_holder_notices(store):
    store.makedirs()
    dead = acquire_lease(store, "crashed", ttl_s=0.5)
    time.sleep(0.7)
    alive = acquire_lease(store, "next", ttl_s=60)
    assert read_lease(store)["owner"] == "next"
    with pytest.raises(LeaseLost, match="'next'"):
        dead.renew()
    assert dead.lost
    with pytest.raises(LeaseLost):
        dead.check()
    alive.check()
    alive.release()


def test_a_renewed_lease_outlives_its_ttl(store):
    store.makedirs()
    # Renewed every ttl/3 (0.67 s); generous against a loaded machine where one put can take 0.5 s.
    lease = acquire_lease(store, "long-run", ttl_s=2).start_renewing()
    first_expiry = read_lease(store)["expires"]
    time.sleep(3)  # past the first expiry: only renewal keeps others out
    with pytest.raises(OutputBusy):
        acquire_lease(store, "other", ttl_s=60)
    assert read_lease(store)["expires"] > first_expiry and not lease.lost
    lease.release()
    assert read_lease(store) is None


def test_an_overlapping_run_can_wait_for_the_lease(store):
    store.makedirs()
    first = acquire_lease(store, "A", ttl_s=60)
    threading.Timer(0.5, first.release).start()
    start = time.monotonic()
    with acquire_lease(store, "B", ttl_s=60, wait_s=20, poll_s=0.1):
        assert 0.4 < time.monotonic() - start < 15
        assert read_lease(store)["owner"] == "B"
    assert read_lease(store) is None


def test_a_half_written_lease_counts_as_stale(tmp_path):
    store = Store.open(str(tmp_path))
    (tmp_path / LEASE).write_text('{"owner": "cra')
    lease = acquire_lease(store, "new", ttl_s=60)
    assert json.loads((tmp_path / LEASE).read_text())["owner"] == "new"
    lease.release()


def test_only_one_of_many_simultaneous_runs_gets_the_lease(tmp_path):
    store = Store.open(str(tmp_path))
    winners, refused = [], []

    def attempt(i: int) -> None:
        try:
            winners.append(acquire_lease(store, f"run-{i}", ttl_s=60))
        except OutputBusy:
            refused.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(refused) == 7
    winners[0].release()


def test_a_lease_whose_process_on_this_machine_ended_is_taken_at_once(store):
    import json
    import subprocess
    import sys

    store.makedirs()
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(child.stdout)  # a pid that has just ended (reuse within the test is vanishingly unlikely)
    killed = acquire_lease(store, "killed-run", ttl_s=600)
    store.write(LEASE, json.dumps(killed.record() | {"pid": dead_pid}).encode())  # as a killed driver left it
    taken = acquire_lease(store, "resumed", ttl_s=60)  # no waiting out the 600 s ttl
    assert read_lease(store)["owner"] == "resumed"
    taken.release()
    live = acquire_lease(store, "live", ttl_s=600)  # our own pid: alive, so still refused
    with pytest.raises(OutputBusy):
        acquire_lease(store, "other", ttl_s=60)
    live.release()


def test_a_lease_that_cannot_be_deleted_is_left_to_expire_without_hiding_the_runs_error(tmp_path, monkeypatch, caplog):
    import errno

    from pipeline.storagefaults import OutputFault

    store = Store.open(str(tmp_path / "out"))
    lease = acquire_lease(store, "run-A", ttl_s=600)

    def read_only(rel):
        raise OutputFault(errno.EROFS, f"output.path {store.root}: read-only file system (EROFS) while deleting {rel}")

    monkeypatch.setattr(store, "remove", read_only)
    with caplog.at_level("WARNING", logger="pipeline.output.lease"):
        lease.release()
    assert "was not removed" in caplog.text and "EROFS" in caplog.text


def test_overwrite_deletes_only_in_a_marked_output(tmp_path):
    precious = tmp_path / "home"
    (precious / "audio").mkdir(parents=True)
    (precious / "audio" / "song.flac").write_bytes(b"mine")
    with pytest.raises(UnsafeOutput, match=rf"has audio but no {MARKER} marker.*nothing was deleted"):
        clear_for_overwrite(Store.open(str(precious)))
    assert (precious / "audio" / "song.flac").exists()
    clear_for_overwrite(Store.open(str(tmp_path / "new")))  # nothing there: nothing to refuse
    store = Store.open(str(tmp_path / "out"))
    assert mark_output(store) is True and mark_output(store) is False
    store.makedirs("audio")
    store.write("audio/a.flac", b"a")
    store.write("summary.json", b"{}")
    clear_for_overwrite(store)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER]
