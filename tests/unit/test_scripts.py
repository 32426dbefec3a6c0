"""The service scripts never start in, and so never wipe, a folder they did not make; `make clean` says what it
deletes."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from stream_app.lifecycle.candidates import PROMOTED
from stream_app.review.sessions import KEPT_SECRET_FILE
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "variable"), [("kafka", "KAFKA_DATA_DIR"), ("mlflow", "MLFLOW_DATA_DIR")], ids=["kafka", "mlflow"]
)
def test_a_start_in_a_folder_of_someone_else_s_is_refused_and_leaves_it_whole(
    tmp_path: Path, script: str, variable: str
) -> None:
    """``reset`` wipes the folder a start used: a start in a folder holding other files made it the script's, and
    the next reset deleted them."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "important.txt").write_text("keep me")
    with socket.socket() as taken:  # were the check gone, the start would stop at a taken port, not start a server
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {
            **os.environ,
            variable: str(folder),
            "KAFKA_PORT": port,
            "KAFKA_CONTROLLER_PORT": port,
            "MLFLOW_PORT": port,
        }
        started = subprocess.run(
            [ROOT / "scripts" / script, "start"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert started.returncode == 1, started.stdout + started.stderr
    assert "did not make" in started.stderr and str(folder) in started.stderr
    reset = subprocess.run(
        [ROOT / "scripts" / script, "reset"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert reset.returncode == 1, reset.stdout + reset.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["important.txt"]


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("script", "name"),
    [
        pytest.param("kafka", "KAFKA", marks=pytest.mark.kafka, id="kafka"),
        pytest.param("mlflow", "MLFLOW", marks=[pytest.mark.mlflow, pytest.mark.slow], id="mlflow"),
    ],
)
def test_a_server_asked_for_on_another_port_than_it_runs_on_is_an_error_and_status_names_the_port_in_use(
    tmp_path: Path, script: str, name: str
) -> None:
    """The running server is found by its data folder: answering "already running" for another port pointed the
    caller (the demo's worker) at a port nothing listened on, and ``status`` named the port asked for."""
    port, other = free_port(), free_port()
    env = {**os.environ, f"{name}_DATA_DIR": str(tmp_path / script), "KAFKA_CONTROLLER_PORT": free_port()}

    def run(command: str, server_port: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ROOT / "scripts" / script, command], env={**env, f"{name}_PORT": server_port}, capture_output=True,
            text=True, timeout=180, check=False,
        )  # fmt: skip

    assert run("start", port).returncode == 0
    try:
        again = run("start", other)
        assert again.returncode == 1 and f"runs on port {port}, not {name}_PORT={other}" in again.stderr, again
        assert f"running on 127.0.0.1:{port} " in run("status", other).stdout
        assert run("start", port).returncode == 0
    finally:
        run("stop", port)


def test_make_clean_s_help_and_the_readme_name_the_people_s_data_it_deletes() -> None:
    """``make clean`` deletes ``.run`` and ``artifacts``: by default the reviewers' decisions, their accounts, the
    review session secret and the promoted models live there, and neither the help nor the README may hide it."""
    dry_run = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (removal,) = [line.split()[2:] for line in dry_run.splitlines() if line.startswith("rm -rf ")]
    defaults = Settings.from_env({})
    kept = [
        defaults.labels_path,
        defaults.reviewers_file,
        defaults.data_dir / KEPT_SECRET_FILE,
        defaults.candidates_dir / PROMOTED,
    ]
    deleted = [path for path in kept if any(path.is_relative_to(folder) for folder in removal)]
    assert deleted == kept
    helps = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (help_line,) = [line for line in helps.splitlines() if line.split()[:2] == ["make", "clean"]]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `make clean` |")]
    for path in deleted:
        assert str(path) in help_line, path
        assert str(path) in row, path


def test_demo_stop_leaves_a_process_alone_that_took_the_pid_of_its_worker(tmp_path: Path) -> None:
    """A pid file left by a worker that crashed may name another process by the time of ``make demo-stop``: the
    stop sent it SIGTERM, then SIGKILL."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "worker.pid").write_text(f"{stranger.pid}\n")
        stopped = subprocess.run(
            [ROOT / "scripts" / "demo", "stop"],
            env={**os.environ, "DEMO_RUN_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert stranger.poll() is None, "the stop killed a process that is not the demo's worker"
        assert "worker stopped" not in stopped.stdout
        assert not (tmp_path / "worker.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()
