"""Training data is validated before training, and bad rows are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.data import (
    Dataset,
    DataValidationError,
    Example,
    apply_feedback,
    copies_of_held_rows,
    load_dataset,
    load_feedback,
)

HEADER = "id,created_on,title,description,tag\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_the_shipped_dataset_is_valid() -> None:
    dataset = load_dataset(Path(__file__).resolve().parents[2] / "data/dataset.csv")
    assert len(dataset.examples) + len(dataset.duplicate_rows) == 764
    assert {e.tag for e in dataset.examples} == {"natural-language-processing", "computer-vision", "mlops", "other"}


def test_a_missing_column_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"missing required columns \['tag'\]"):
        load_dataset(write(tmp_path, "1,2020-01-01,A title,desc\n", header="id,created_on,title,description\n"))


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"1,d,Caf\xe9 title,x,mlops\n", "codec can't decode"),
        (b'1,d,Title,"' + b"x" * 200_000 + b'",mlops\n', "field larger"),
    ],
    ids=["latin-1", "a-field-past-the-csv-limit"],
)
def test_a_file_the_csv_reader_cannot_read_stops_the_run_with_a_data_error(
    tmp_path: Path, body: bytes, said: str
) -> None:
    """Not a traceback: the exporter turns a data error into one line and exit status 2."""
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,created_on,title,description,tag\n" + body)
    with pytest.raises(DataValidationError, match=said):
        load_dataset(path)


def test_a_missing_dataset_or_feedback_file_stops_the_run_with_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="cannot read the dataset .*No such file"):
        load_dataset(tmp_path / "missing.csv")
    with pytest.raises(DataValidationError, match="cannot read the feedback .*No such file"):
        load_feedback(tmp_path / "missing.jsonl")


def test_empty_titles_and_unapproved_tags_name_their_lines(tmp_path: Path) -> None:
    body = "1,d,Good title,x,mlops\n2,d,   ,x,mlops\n3,d,Another,x,reinforcement-learning\n"
    with pytest.raises(DataValidationError) as error:
        load_dataset(write(tmp_path, body))
    assert "line 3: empty title" in str(error.value)
    assert "line 4: tag 'reinforcement-learning' is not approved" in str(error.value)
    assert "line 2" not in str(error.value)


def test_empty_and_repeated_ids_name_their_lines(tmp_path: Path) -> None:
    body = "1,d,First,x,mlops\n,d,Second,x,mlops\n1,d,Third,x,other\n"
    with pytest.raises(DataValidationError) as error:
        load_dataset(write(tmp_path, body))
    assert "line 3: empty id" in str(error.value)
    assert "line 4: id '1' already used on line 2" in str(error.value)


def test_a_row_is_named_by_the_line_it_starts_on_when_a_description_spans_lines(tmp_path: Path) -> None:
    body = '1,d,First,x,mlops\n2,d,Second,"one\ntwo",robotics\n3,d,Third,x,vision\n'
    with pytest.raises(DataValidationError) as error:
        load_dataset(write(tmp_path, body))
    assert "line 3: tag 'robotics'" in str(error.value)
    assert "line 5: tag 'vision'" in str(error.value)


def test_duplicate_titles_are_reported_and_removed(tmp_path: Path) -> None:
    body = "1,d,Same Title,x,mlops\n2,d,same   title,y,other\n3,d,Different,z,other\n"
    dataset = load_dataset(write(tmp_path, body))
    assert [e.id for e in dataset.examples] == ["1", "3"]
    assert dataset.duplicate_rows == [3]


def test_reposts_and_typo_copies_are_removed_as_the_worker_would_drop_them(tmp_path: Path) -> None:
    # A copy left in the data can land in the test split while its original trains: the card would score it.
    description = "We detect objects in video streams at sixty frames a second."
    body = (
        f"1,d,Real-time Object Detection with YOLO,{description},computer-vision\n"
        f"2,d,Real-time Object Detection with YOLO - Medium,{description},computer-vision\n"
        f'3,d,"YOLO: object detection, with real-time!",{description},computer-vision\n'
        f"4,d,Real-time Obiect Detection with YOLO,{description},computer-vision\n"
        "5,d,Real-time Object Tracking with YOLO,Another project: we follow objects between frames.,computer-vision\n"
        "6,d,Serving Models with Ray,x,mlops\n"
    )
    dataset = load_dataset(write(tmp_path, body))
    assert [e.id for e in dataset.examples] == ["1", "5", "6"]
    assert dataset.duplicate_rows == [3, 4, 5]


def test_feedback_replaces_a_decorated_repost_of_a_row(tmp_path: Path) -> None:
    dataset = load_dataset(write(tmp_path, "1,d,Serving Models with Ray,x,other\n2,d,Another,y,other\n"))
    feedback = [Example("9", "[P] Serving models with Ray | Reddit", "x", "mlops")]
    assert [(e.id, e.tag) for e in apply_feedback(dataset.examples, feedback)] == [("2", "other"), ("9", "mlops")]


def with_feedback(path: Path, feedback: Path) -> Dataset:
    """The dataset at ``path`` with the feedback applied, as the trainer applies it to its training split."""
    dataset = load_dataset(path)
    return Dataset(apply_feedback(dataset.examples, load_feedback(feedback).examples), dataset.duplicate_rows)


def test_feedback_relabels_by_id_and_the_latest_decision_wins(tmp_path: Path) -> None:
    feedback = tmp_path / "feedback.jsonl"
    lines = [
        {"id": "1", "title": "Same Title", "description": "x", "tag": "other"},
        {"id": "1", "title": "Same Title", "description": "x", "tag": "computer-vision"},
        {"id": "9", "title": "New item", "description": "", "tag": "mlops"},
    ]
    feedback.write_text("\n".join(json.dumps(line) for line in lines))
    dataset = with_feedback(write(tmp_path, "1,d,Same Title,x,mlops\n"), feedback)
    assert {(e.id, e.tag) for e in dataset.examples} == {("1", "computer-vision"), ("9", "mlops")}


def test_feedback_replaces_a_dataset_row_with_the_same_title(tmp_path: Path) -> None:
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"id": "77", "title": "same  TITLE", "description": "", "tag": "other"}) + "\n")
    dataset = with_feedback(write(tmp_path, "1,d,Same Title,x,mlops\n2,d,Kept,y,mlops\n"), feedback)
    assert {(e.id, e.tag) for e in dataset.examples} == {("2", "mlops"), ("77", "other")}


def test_bad_feedback_lines_are_skipped_and_named_and_the_rest_is_trained_on(tmp_path: Path) -> None:
    """The worker appends whatever decisions it reads; one unusable line must not stop every retrain."""
    feedback = tmp_path / "feedback.jsonl"
    lines = [
        json.dumps({"id": "1", "title": "T", "tag": "mlops"}),
        json.dumps({"id": "2", "title": "T", "tag": "robotics"}),
        "{not json",
        json.dumps({"id": "4", "tag": "mlops"}),
        json.dumps({"id": "5", "title": None, "tag": "mlops"}),
        json.dumps({"id": "6", "title": "  ", "tag": "mlops"}),
        json.dumps({"id": " ", "title": "T", "tag": "mlops"}),
        "[" * 100_000,
        json.dumps({"id": "9", "title": "\ud800", "tag": "mlops"}),
        json.dumps({"id": "10", "title": "T", "tag": "mlops", "decided_at": "~"}),
        json.dumps({"id": "11", "title": "Kept", "description": None, "tag": "other"}),
    ]
    feedback.write_text("\n".join(lines))
    loaded = load_feedback(feedback)
    assert [(e.id, e.title, e.tag) for e in loaded.examples] == [("1", "T", "mlops"), ("11", "Kept", "other")]
    assert [problem.split(":")[0] for problem in loaded.skipped] == [f"line {n}" for n in range(2, 11)]
    assert "line 2: tag 'robotics' is not approved" in loaded.skipped
    dataset = with_feedback(write(tmp_path, "1,d,T,x,other\n"), feedback)
    assert {(e.id, e.tag) for e in dataset.examples} == {("1", "mlops"), ("11", "other")}


def test_feedback_with_decision_times_keeps_the_latest_decision_whatever_the_line_order(tmp_path: Path) -> None:
    feedback = tmp_path / "labels.jsonl"
    lines = [
        {"id": "1", "title": "T", "tag": "mlops", "decided_at": "2026-11-23T00:00:02"},
        {"id": "1", "title": "T", "tag": "other", "decided_at": "2026-11-23T00:00:01"},  # read later, decided earlier
    ]
    feedback.write_text("\n".join(json.dumps(line) for line in lines))
    assert [(e.id, e.tag) for e in load_feedback(feedback).examples] == [("1", "mlops")]


def test_feedback_keeps_the_decision_made_last_not_the_largest_text(tmp_path: Path) -> None:
    feedback = tmp_path / "labels.jsonl"
    lines = [
        {"id": "1", "title": "T", "tag": "mlops", "decided_at": "2026-11-23T00:00:00.500+00:00"},
        {"id": "1", "title": "T", "tag": "other", "decided_at": "2026-11-23T00:00:00Z"},  # larger text, earlier
        {"id": "1", "title": "T", "tag": "computer-vision", "decided_at": "~"},  # forged: sorts after every time
        {"id": "1", "title": "T", "tag": "computer-vision", "decided_at": "9999-12-31T00:00:00Z"},  # forged too
    ]
    feedback.write_text("\n".join(json.dumps(line) for line in lines))
    loaded = load_feedback(feedback)
    assert [(e.id, e.tag) for e in loaded.examples] == [("1", "mlops")]
    assert len(loaded.skipped) == 2


def test_ids_that_differ_by_surrounding_spaces_are_two_items_with_one_label_each(tmp_path: Path) -> None:
    """The worker keeps " 1" and "1" apart (two events), and so does the store's latest decision per id: the
    exporter must not turn them into two labels for one id."""
    feedback = tmp_path / "labels.jsonl"
    lines = [{"id": "1", "title": "A", "tag": "mlops"}, {"id": " 1", "title": "B", "tag": "other"}]
    feedback.write_text("\n".join(json.dumps(line) for line in lines))
    loaded = load_feedback(feedback)
    assert sorted((e.id, e.tag) for e in loaded.examples) == [(" 1", "other"), ("1", "mlops")]


def test_a_title_with_a_unicode_line_separator_is_one_feedback_line(tmp_path: Path) -> None:
    """The labelled store writes JSON lines with text as it is: U+2028 or U+0085 in a title is not a line end."""
    feedback = tmp_path / "labels.jsonl"
    feedback.write_text(json.dumps({"id": "1", "title": "A\u2028B\x85C", "tag": "mlops"}, ensure_ascii=False))
    loaded = load_feedback(feedback)
    assert [e.title for e in loaded.examples] == ["A\u2028B\x85C"] and loaded.skipped == []


def test_decisions_on_copies_of_held_out_rows_are_found_as_the_worker_finds_copies() -> None:
    """A decision whose item is a held-out row under another id, written in full-width letters, reordered or with
    one typo, would put that row into training and let the gate judge the candidate on data it learned."""
    description = "We fine-tune a transformer to classify legal documents by their topic."
    held = [Example("t1", "Legal document classification with BERT", description, "natural-language-processing")]
    feedback = [
        Example("f1", "Ｌｅｇａｌ document classification with BERT", description, "other"),  # full-width letters
        Example("f2", "BERT: legal document classification with", description, "other"),  # order, punctuation
        Example("f3", "Legal document clasification with BERT", description, "other"),  # one typo
        Example("f4", "Legal document summarization with BERT", "Another text on another task.", "other"),
        Example("f5", "Object detection with YOLO", "", "computer-vision"),
    ]
    assert copies_of_held_rows(held, feedback) == {0, 1, 2}


def test_decisions_that_carry_a_held_out_row_s_description_under_another_title_are_found() -> None:
    """A new title over a test row's description put the row's text into training: trained on, 115 such decisions
    raised the candidate's test weighted precision from 0.890 to 0.991, and let a worse model pass the gate."""
    description = "We fine-tune a transformer to classify legal documents by their topic and their court."
    held = [Example("t1", "Legal document classification with BERT", description, "natural-language-processing")]
    feedback = [
        Example("f1", "Repost number 1 of a project", description, "natural-language-processing"),
        Example("f2", "Repost number 2", "<p>" + description.upper() + "</p>", "other"),  # as the dedupe reads it
        Example("f3", "Repost number 3", description.replace(" and their court", ""), "other"),  # words cut
        Example("f4", "Repost number 4", "We fine-tune a detector to find cars in aerial images of cities.", "other"),
        Example("f5", "Repost number 5", "Legal documents by topic.", "other"),  # too short to tell
    ]
    assert copies_of_held_rows(held, feedback) == {0, 1, 2}
