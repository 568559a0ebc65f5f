"""The accounts spec's one listing per host: its script and what is read back from it."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from ops import REPO_ROOT
from ops.accounts.model import allocate
from ops.accounts.sync import load_context
from ops.inventory import load
from ops.sample import make_class
from ops.state import AccountsState
from tests.infra.conftest import Expected
from tests.infra.test_accounts import facts_script, parse_facts


def expected_for(tmp_path: Path, n_pairs: int) -> Expected:
    inv = tmp_path / "inv"
    shutil.copytree(REPO_ROOT / "inventory" / "lab" / "group_vars", inv / "group_vars")
    (inv / "roster.csv").write_text(make_class(n_pairs, 1))
    (inv / "hosts.yml").write_text("all:\n  children:\n    slurm_controller:\n      hosts:\n"
                                   "        ctl:\n    gpu_servers:\n      hosts:\n        gpu1:\n")
    ctx = load_context(load(inv), today=dt.date(2026, 1, 1))
    state = allocate(ctx.roster, AccountsState(), ctx.cfg, inv / "state" / "accounts.json")
    return Expected(ctx.cfg, state, ctx.roster)


def test_the_listing_of_a_big_class_fits_one_command_line(tmp_path: Path) -> None:
    expected = expected_for(tmp_path, 300)
    script = facts_script(expected)
    assert len(script.encode()) < 64 * 1024  # MAX_ARG_STRLEN is 128 KiB: room to spare
    subprocess.run(["sh", "-n", "-c", script], check=True)
    # the attempts are made on the host from a data line per student, by a shell of theirs
    assert script.count("setpriv --reuid") == 1
    assert script.count("\n") < 80 + len(expected.students("active"))


def test_the_listing_is_read_back_section_by_section() -> None:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    key, me = b64("ssh-ed25519 AAAA ann\n"), b64("ann\n")
    text = "\n".join([
        "== passwd", "ann:x:20001:20001::/home/ann:/bin/bash",
        "== group", "ann:x:20001:", "pair001:x:30001:ann,bob",
        "== shadow", "ann:*:20818", "staff:!:",
        "== id", "ann:ann pair001 course", "ghost:",
        "== stat", "/home/ann|directory|20001|20001|700|ann|ann",
        "/home/ann/.ssh/authorized_keys|regular empty file|20001|20001|600|ann|ann",
        "/srv/pairs/pair001|-",
        "== keys", f"ann {key}", "bob -",
        "== sudo", "yes", f"ann {b64('User ann is not allowed to run sudo on ctl.')}",
        "== attempts", f"ann ls-home|2|ann|{me}|{b64('ls: Permission denied')}",
        "ann sudo|1|ann||",
        "== end"])
    f = parse_facts(text)
    assert f.passwd["ann"][5] == "/home/ann" and f.groups["pair001"] == (30001, ["ann", "bob"])
    assert f.shadow["ann"] == ("*", "20818") and f.expiration("ann") == dt.date(2026, 12, 31)
    assert f.expiration("staff") is None
    assert f.id_groups == {"ann": ["ann", "pair001", "course"], "ghost": []}
    keys = f.stats["/home/ann/.ssh/authorized_keys"]
    assert keys is not None and keys.kind == "regular file" and keys.mode == 0o600
    assert f.stats["/srv/pairs/pair001"] is None
    assert f.keys == {"ann": "ssh-ed25519 AAAA ann\n", "bob": None}
    assert f.has_sudo and "not allowed" in f.sudo_rules["ann"]
    assert f.attempt("ann ls-home").denied() and not f.attempt("ann sudo").denied()


def test_a_listing_cut_short_fails_the_checks() -> None:
    with pytest.raises(AssertionError, match="stopped in its stat section"):
        parse_facts("== passwd\nann:x:1:1::/h:/bin/sh\n== stat\n")


def test_an_attempt_that_did_not_run_as_its_student_fails() -> None:
    f = parse_facts("== attempts\nann sudo|1|root||\n== end")
    with pytest.raises(AssertionError, match="could not run as ann"):
        f.attempt("ann sudo")
