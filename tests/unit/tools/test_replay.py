"""The replay tool (what `make demo` and the Compose `replay` service run) on input it cannot use: one line
naming the cause and exit status 1, never a traceback; a malformed row of the sample data is replayed, not a
crash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tools.corpus import planted_near_duplicates
from tools.replay import build_messages, main, read_rows

HEADER = "id,created_on,title,description,tag\n"


def test_a_row_with_fewer_or_more_fields_than_the_header_is_named_by_its_line(tmp_path: Path) -> None:
    for row in ("999,2020-01-01", "998,2020-01-01,A title,desc,other,extra"):
        data = tmp_path / "data.csv"
        data.write_text(HEADER + "1,2020-01-01,Object detection with YOLO,desc,computer-vision\n" + row + "\n")
        with pytest.raises(ValueError, match="line 3"):
            read_rows(data)


def test_a_row_with_a_blank_title_is_replayed_and_never_copied(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text(HEADER + "1,2020-01-01,Object detection with YOLO,desc,computer-vision\n998,2020-01-01,   ,d,x\n")
    rows = read_rows(data)
    for seed in range(10):
        messages = build_messages(rows, duplicate_share=1.0, malformed_share=0.0, seed=seed)
        assert [m.key for m in messages if m.expected == "event"] == [b"1", b"998"]
        assert all(original["id"] == "1" for original, _, _ in planted_near_duplicates(rows, random.Random(seed)))


@pytest.mark.parametrize("case", ["missing file", "short row", "no broker", "bad setting"])
def test_unusable_input_is_one_line_and_exit_status_1(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(HEADER + "1,2020-01-01,Object detection with YOLO,desc,computer-vision\n")
    monkeypatch.setenv("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens on port 1
    if case == "missing file":
        data = tmp_path / "nope.csv"
    elif case == "short row":
        data.write_text(HEADER + "999,2020-01-01\n")
    elif case == "bad setting":
        monkeypatch.setenv("TAGGER_PARTITIONS", "x")
    assert main(["--data", str(data), "--rate", "0", "--timeout", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("replay: "), err
