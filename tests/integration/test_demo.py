"""`make demo` leaves its worker running, a Ctrl-C in the demo's terminal included, until `make demo-stop`."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.integration.harness import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether the worker ``pid`` runs (a zombie, gone but not yet reaped, has no command line)."""
    try:
        return b"stream_app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_ctrl_c_in_the_demo_s_terminal_leaves_its_worker_running_until_demo_stop(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A Ctrl-C reaches every process of the terminal's foreground group. The worker was one of them, and its own
    SIGINT handler stopped it, while the README says it keeps running."""
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    port = free_port()
    rows = list(csv.DictReader((ROOT / "data" / "dataset.csv").open(encoding="utf-8")))[:6]
    data = tmp_path / "rows.csv"
    with data.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    env = {
        **os.environ,
        "DEMO_RUN_DIR": str(tmp_path / "run"),
        "TAGGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TAGGER_WEB_PORT": str(port),
        "TAGGER_APP_ID": prefix,
        "TAGGER_MODEL_DIR": str(ROOT / "tests" / "fixtures" / "model"),
        **{
            f"TAGGER_{kind.upper()}_TOPIC": f"{prefix}-{kind}"
            for kind in ("input", "tagged", "review", "duplicates", "deadletter", "feedback")
        },
    }
    # Its own session, as a terminal's foreground job is its own process group.
    demo = subprocess.Popen(
        [ROOT / "scripts" / "demo", "--data", str(data), "--rate", "2", "--duplicates", "0", "--malformed", "0"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = tmp_path / "run" / "worker.pid"
    try:
        deadline = time.monotonic() + 180
        while not answers(f"http://127.0.0.1:{port}/ready"):
            assert demo.poll() is None, "the demo stopped before its worker was ready"
            assert time.monotonic() < deadline, "the demo's worker was not ready within 180 s"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        time.sleep(3)  # a worker stopping on the signal has gone by now
        assert alive(worker), "the Ctrl-C stopped the demo's worker"
        assert answers(f"http://127.0.0.1:{port}/health")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        stopped = subprocess.run(
            [ROOT / "scripts" / "demo", "stop"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "worker stopped" in stopped.stdout
    assert not alive(worker)
