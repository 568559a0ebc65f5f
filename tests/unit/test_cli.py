"""The CLI as a user meets it: exit codes, one-line errors, data on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ops import REPO_ROOT


def ops(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_roster_check_json(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text("student_id,first_name,last_name,email,pair\n"
                      "2,Dana,Cohen,d@u.il,7\n1,Dan,Cohen,dn@u.il,7\n3,Zoë,Ångström,z@u.il,x\n")
    p = ops("-i", str(tmp_path), "roster", "check", str(roster), "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["students"] == [
        {"student_id": "2", "username": "dcohen2", "pair": "pair007"},
        {"student_id": "1", "username": "dcohen", "pair": "pair007"},
        {"student_id": "3", "username": "zangstrom", "pair": "pair-x"},
    ]
    assert doc["pairs"] == [{"name": "pair-x", "members": ["zangstrom"]},
                            {"name": "pair007", "members": ["dcohen2", "dcohen"]}] or \
        doc["pairs"] == [{"name": "pair007", "members": ["dcohen2", "dcohen"]},
                         {"name": "pair-x", "members": ["zangstrom"]}]


def test_bad_roster_exit_code_and_all_lines(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text("student_id,first_name,last_name,email,pair,shoe_size\n")
    p = ops("roster", "check", str(roster))
    assert p.returncode == 3
    assert p.stderr.strip() == f"ops: error: {roster}:1: unknown column 'shoe_size' (known: " \
        "student_id, first_name, last_name, email, pair, ssh_public_key)"
    assert p.stdout == ""


def test_flags_after_the_command(tmp_path: Path) -> None:
    p = ops("accounts", "plan", "-i", str(tmp_path / "nowhere"), "-y")
    assert p.returncode == 3
    assert "no such inventory directory" in p.stderr


def test_unknown_area_is_a_usage_error() -> None:
    p = ops("verify", "kitchen", "--hosts", "local://")
    assert p.returncode == 2
    assert "unknown area 'kitchen'" in p.stderr


def test_unknown_flag_is_a_usage_error() -> None:
    p = ops("accounts", "sync", "--frobnicate")
    assert p.returncode == 2
    assert "No such option" in p.stderr


def test_lab_inventory_without_hosts_file(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    (lab / "group_vars").mkdir(parents=True)
    (lab / "group_vars" / "all.yml").write_text("accounts_roster: roster.csv\n")
    p = ops("-i", str(lab), "accounts", "plan")
    assert p.returncode == 3
    assert p.stderr.strip().endswith("run `ops lab up` first")
