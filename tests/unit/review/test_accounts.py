"""Reviewer accounts: ``python -m stream_app.review.accounts`` adds, replaces and removes them with salted argon2
hashes in an owner-only file, and only the right password verifies."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher

from stream_app.errors import ConfigError
from stream_app.review import accounts as accounts_module
from stream_app.review.accounts import ReviewerAccounts, add_reviewer, read_accounts

ROOT = Path(__file__).resolve().parents[3]
SECRET = "a long password"


def reviewers(*args: str, password: str = "", env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TAGGER_REVIEWERS_FILE": str(env_file)} if env_file else None
    return subprocess.run(
        [sys.executable, "-m", "stream_app.review.accounts", *args], input=password + "\n", capture_output=True,
        text=True, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


def test_the_command_adds_a_reviewer_whose_password_alone_verifies(tmp_path: Path) -> None:
    path = tmp_path / "reviewers"
    added = reviewers("add", "ann", password=SECRET, env_file=path)
    assert added.returncode == 0, added.stderr
    assert SECRET not in path.read_text() and path.stat().st_mode & 0o777 == 0o600
    accounts = ReviewerAccounts(path)
    accounts.refresh()
    assert accounts.names == {"ann"}
    assert accounts.verify("ann", "a long password")
    assert not accounts.verify("ann", "a long passwore") and not accounts.verify("bob", "a long password")
    assert reviewers("--file", str(path), "list").stdout.split() == ["ann"]
    assert reviewers("--file", str(path), "remove", "ann").returncode == 0
    accounts.refresh()
    assert accounts.names == frozenset()


def test_file_may_follow_the_command_as_the_docs_write_it(tmp_path: Path) -> None:
    path, elsewhere = tmp_path / "reviewers", tmp_path / "not-this-one"
    added = reviewers("--file", str(elsewhere), "add", "ann", "--file", str(path), password=SECRET)
    assert added.returncode == 0, added.stderr
    assert reviewers("list", "--file", str(path)).stdout.split() == ["ann"] and not elsewhere.exists()
    assert reviewers("remove", "ann", "--file", str(path)).returncode == 0
    assert reviewers("list", "--file", str(path)).stdout.split() == []


def test_the_same_password_is_salted_differently_and_a_new_one_replaces_the_old(tmp_path: Path) -> None:
    path = tmp_path / "reviewers"
    add_reviewer(path, "ann", "the same password")
    add_reviewer(path, "bob", "the same password")
    hashes = read_accounts(path)
    assert hashes["ann"] != hashes["bob"] and hashes["ann"].startswith("$argon2id$")
    add_reviewer(path, "ann", "another password")
    accounts = ReviewerAccounts(path)
    accounts.refresh()
    assert accounts.verify("ann", "another password") and not accounts.verify("ann", "the same password")


@pytest.mark.parametrize(("name", "password"), [("ann", "short"), ("a n", "a long password"), ("", "a long password"),
                                                ("ann:x", "a long password"), ("ann", "x" * 2000)])  # fmt: skip
def test_a_bad_name_or_password_is_refused(tmp_path: Path, name: str, password: str) -> None:
    with pytest.raises(ConfigError):
        add_reviewer(tmp_path / "reviewers", name, password)
    assert reviewers("--file", str(tmp_path / "r"), "add", name, password=password).returncode == 2


def test_malformed_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "reviewers"
    add_reviewer(path, "ann", "a long password")
    with path.open("a") as file:
        file.write("# a comment\nbob\neve:plain-text-password\n\n")
        file.write("carl:$argon2id$v=19$m=65536,t=3,p=4$broken\n")  # no digest: argon2 cannot read it
        file.write("dan:$argon2x$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
    assert set(read_accounts(path)) == {"ann"}


class CountingHasher(PasswordHasher):
    """argon2's hasher, noting each hash it was asked to verify against."""

    def __init__(self) -> None:
        super().__init__()
        self.against: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:  # noqa: A002 (argon2's name)
        self.against.append(str(hash))
        return super().verify(hash, password)


def test_a_stored_hash_argon2_cannot_decode_is_answered_like_an_unknown_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """argon2 refuses a hash it cannot decode at once: answered by that alone, the speed of a refusal would tell
    that the name exists. It is answered after the unknown name's full check too, and logged."""
    path = tmp_path / "reviewers"
    add_reviewer(path, "ann", SECRET)
    good = read_accounts(path)["ann"]
    # Its parameters read; its digest, 37 base64 characters, never decodes (one past a multiple of 4 is no length
    # base64 has: 38 would decode whenever the last character's spare bits happened to be zero).
    undecodable = good[:-6]
    with path.open("a") as file:
        file.write(f"bob:{undecodable}\n")
    accounts = ReviewerAccounts(path)
    accounts.refresh()
    assert accounts.names == {"ann", "bob"}
    hasher = CountingHasher()
    monkeypatch.setattr(accounts_module, "_hasher", hasher)
    assert accounts.sign_in("nobody", SECRET) is None
    unknown_name_checks = list(hasher.against)
    hasher.against.clear()
    assert accounts.sign_in("bob", SECRET) is None
    assert hasher.against == [undecodable, *unknown_name_checks]
    assert "bob's stored hash cannot be decoded" in caplog.text
    assert accounts.sign_in("ann", SECRET) is not None


def test_an_accounts_file_that_is_a_fifo_or_too_large_is_refused_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO in the file's place would block the thread reading it, and with it every later sign-in and page."""
    fifo, large = tmp_path / "fifo", tmp_path / "large"
    os.mkfifo(fifo, 0o600)
    add_reviewer(large, "ann", SECRET)
    with large.open("a") as file:
        file.write("# padding\n" * (accounts_module.MAX_ACCOUNTS_FILE_BYTES // 10))
    for path in (fifo, large):
        accounts = ReviewerAccounts(path)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(accounts.refresh).result(timeout=10)
        assert accounts.names == frozenset()
    assert "fifo is not a regular file" in caplog.text and "is larger than" in caplog.text


def test_an_accounts_file_that_cannot_be_read_means_nobody_signs_in_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Turned into a folder after start-up (or made unreadable): the review pages keep answering, read-only."""
    path = tmp_path / "reviewers"
    add_reviewer(path, "ann", "correct horse battery")
    accounts = ReviewerAccounts(path)
    accounts.refresh()
    assert accounts.names == {"ann"}
    path.unlink()
    path.mkdir()
    for _ in range(3):
        accounts.refresh()
    assert accounts.names == frozenset()
    assert sum("cannot read the reviewer accounts" in r.getMessage() for r in caplog.records) == 1
    path.rmdir()
    add_reviewer(path, "bob", "correct horse battery")
    accounts.refresh()
    assert accounts.names == {"bob"}
