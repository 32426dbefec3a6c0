"""Reviewer accounts: a file of ``name:argon2-hash`` lines, and ``python -m stream_app.review.accounts`` to manage it.

    python -m stream_app.review.accounts add NAME      # asks for the password (or reads one line of stdin)
    python -m stream_app.review.accounts remove NAME
    python -m stream_app.review.accounts list

The file is ``TAGGER_REVIEWERS_FILE`` (or ``--file``). Passwords are hashed with argon2id (``argon2-cffi``'s
defaults, a fresh salt each); the file is written whole beside itself and renamed into place, readable by its
owner only. A running worker takes up changes at the next sign-in or page load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import hashlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from stream_app.errors import ConfigError
from stream_app.files import read_regular
from stream_app.settings import Settings

log = logging.getLogger(__name__)

MAX_NAME_CHARS: Final = 64
NAME_PATTERN: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_NAME_CHARS - 1}}}")
"""A reviewer name: what the feedback records and labels carry as ``reviewer``."""
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024
"""Longer passwords are refused before hashing, so a sign-in form cannot make the worker hash megabytes."""
MAX_ACCOUNTS_FILE_BYTES: Final = 4 * 1024 * 1024
"""An accounts file past this is not read (nobody can sign in): some 40,000 reviewers' lines."""

_hasher = PasswordHasher()


@functools.cache
def _unknown_user_hash() -> str:
    """Verified against for an unknown name, so a sign-in takes as long whether the name exists or not."""
    return _hasher.hash(secrets.token_hex(16))


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a reviewer."""
    return NAME_PATTERN.fullmatch(name) is not None


UNREADABLE: Final = (-1, -1, -1)
"""The stamp of an accounts file that could not be read."""


class ReviewerAccounts:
    """The accounts of one file, re-read when the file changes (:meth:`refresh`, a ``stat`` when it has not)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hashes: dict[str, str] = {}
        self._stamp: tuple[int, int, int] | None = None

    def refresh(self) -> None:
        """Re-read the file if it changed since the last read; a missing file means no reviewer, and so does one
        that cannot be read (logged once until it can). Blocking: call it from a thread, not the event loop."""
        try:
            stat = self.path.stat()
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._hashes = read_accounts(self.path)
                self._stamp = stamp
        except FileNotFoundError:
            self._hashes, self._stamp = {}, None
        except OSError as error:  # a folder, no permission: nobody can sign in, and the pages still answer
            if self._stamp != UNREADABLE:
                log.warning("cannot read the reviewer accounts %s: %s; nobody can sign in", self.path, error)
            self._hashes, self._stamp = {}, UNREADABLE

    @property
    def names(self) -> frozenset[str]:
        """The reviewers who can sign in."""
        return frozenset(self._hashes)

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s. Slow on purpose (argon2): call it from a thread."""
        return self.sign_in(name, password) is not None

    def sign_in(self, name: str, password: str) -> str | None:
        """The :meth:`stamp` of ``name``'s account if ``password`` is its password, else None. Slow on purpose
        (argon2): call it from a thread."""
        known = self._hashes.get(name)
        if len(password) > MAX_PASSWORD_CHARS:
            return None
        try:
            verified = _hasher.verify(known or _unknown_user_hash(), password)
        except VerifyMismatchError:
            return None
        except (VerificationError, InvalidHashError):
            # A stored hash argon2 cannot decode fails at once; checking the unknown name's as well keeps the
            # answer as slow as for any other name, so its speed does not tell that the name exists.
            log.warning("reviewer %s's stored hash cannot be decoded; nobody can sign in as them", name)
            with contextlib.suppress(VerificationError):
                _hasher.verify(_unknown_user_hash(), password)
            return None
        except UnicodeEncodeError:  # a lone surrogate, which a form in another charset can carry: no password's
            return None
        return account_stamp(known) if verified and known is not None else None

    def stamp(self, name: str) -> str | None:
        """What ties a session to ``name``'s account as it is now (:func:`account_stamp`); None if there is none."""
        known = self._hashes.get(name)
        return None if known is None else account_stamp(known)


def account_stamp(encoded: str) -> str:
    """A short digest of an account's stored hash. Setting a password, even the same one again, salts a new hash,
    so the stamp changes: sessions carry the stamp of their sign-in and end with the password they signed in with.
    It tells nothing about the password (a digest of a salted, slow hash)."""
    return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def read_accounts(path: Path) -> dict[str, str]:
    """Name to hash, from the file's well-formed lines (others are logged and ignored); raises :class:`OSError`
    for a file that is not a regular one (a FIFO would block the reader) or is larger than
    :data:`MAX_ACCOUNTS_FILE_BYTES`."""
    content = read_regular(path, MAX_ACCOUNTS_FILE_BYTES)
    accounts: dict[str, str] = {}
    for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, colon, encoded = line.strip().partition(":")
        if not (colon and valid_name(name) and _argon2_hash(encoded)):
            log.warning("%s line %d is not 'name:argon2-hash'; ignored", path, number)
            continue
        accounts[name] = encoded
    return accounts


def _argon2_hash(encoded: str) -> bool:
    """Whether ``encoded`` reads as an argon2 hash with its parameters (argon2 may still fail to decode its salt
    or digest: :meth:`ReviewerAccounts.sign_in` answers those as slowly as any other)."""
    try:
        extract_parameters(encoded)
    except (InvalidHashError, ValueError):
        return False
    return True


def write_accounts(path: Path, accounts: dict[str, str]) -> None:
    """Replace the file with ``accounts``, readable by its owner only, in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.writelines(f"{name}:{encoded}\n" for name, encoded in accounts.items())
    os.replace(staging, path)


def add_reviewer(path: Path, name: str, password: str) -> None:
    """Add ``name`` with ``password`` (or set a new password); raises :class:`ConfigError` for a bad name or a
    password too short or too long."""
    if not valid_name(name):
        raise ConfigError(f"reviewer name {name!r} must match {NAME_PATTERN.pattern}")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ConfigError(f"the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    accounts = read_accounts(path) if path.exists() else {}
    accounts[name] = _hasher.hash(password)
    write_accounts(path, accounts)


def remove_reviewer(path: Path, name: str) -> bool:
    """Remove ``name``; False if it was not there."""
    accounts = read_accounts(path) if path.exists() else {}
    if accounts.pop(name, None) is None:
        return False
    write_accounts(path, accounts)
    return True


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: add, remove or list reviewers."""
    parser = argparse.ArgumentParser(prog="python -m stream_app.review.accounts", description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, help="accounts file (default: TAGGER_REVIEWERS_FILE)")
    # Before or after the command: a subcommand's --file, when given, replaces the one before it.
    file_option = argparse.ArgumentParser(add_help=False)
    file_option.add_argument("--file", type=Path, default=argparse.SUPPRESS, help="accounts file")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", parents=[file_option], help="add a reviewer, or set a new password")
    add.add_argument("name")
    commands.add_parser("remove", parents=[file_option], help="remove a reviewer").add_argument("name")
    commands.add_parser("list", parents=[file_option], help="list the reviewers")
    args = parser.parse_args(argv)
    try:
        path = args.file or Settings.from_env().reviewers_file
        if args.command == "add":
            add_reviewer(path, args.name, _read_password())
            print(f"{args.name} can sign in (accounts in {path})")
        elif args.command == "remove":
            print(f"{args.name} removed" if remove_reviewer(path, args.name) else f"no reviewer {args.name!r}")
        else:
            print("\n".join(sorted(read_accounts(path))) if path.exists() else f"no accounts file {path}")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
