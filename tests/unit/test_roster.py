from __future__ import annotations

import pytest

from ops import roster
from ops.errors import InputError, InputErrors
from ops.sample import fake_ed25519_key, make_class

HEADER = "student_id,first_name,last_name,email,pair"


def test_bom_and_crlf_are_accepted() -> None:
    text = "\ufeff" + HEADER + "\r\n1,Dana,Cohen,d@uni.ac.il,17\r\n2,Eli,Levi,e@uni.ac.il,017\r\n"
    r = roster.parse(text, "r.csv")
    assert [s.student_id for s in r.students] == ["1", "2"]
    assert r.pairs() == {"17": r.students}  # 17 and 017 are one pair


def test_load_decodes_bom_bytes(tmp_path) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes(("\ufeff" + HEADER + "\n1,דנה,כהן,d@uni.ac.il,1\n").encode("utf-8"))
    assert roster.load(p).students[0].first_name == "דנה"


def test_not_utf8_names_the_line(tmp_path) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes((HEADER + "\n1,Dana,Cohen,d@uni.ac.il,1\n").encode() + b"2,Z\xe9,A,z@u.il,2\n")
    with pytest.raises(InputError, match=r"r.csv:3: not UTF-8"):
        roster.load(p)


def test_every_problem_is_reported_with_its_line() -> None:
    key = fake_ed25519_key(__import__("random").Random(1), "x")
    text = "\n".join([
        HEADER + ",ssh_public_key",
        f"1,Dana,Cohen,d@uni.ac.il,1,{key}",
        "1,Dana,Again,d2@uni.ac.il,2,",        # duplicate id
        "3,Eli,,e@uni.ac.il,3,",               # missing field
        "4,Noa,Levi,not-an-email,4,",          # bad email
        "5,Omer,Katz,o@uni.ac.il,5,ssh-rsa AAAA",  # bad key
        "6,A,B,a@uni.ac.il,1,",
        "7,C,D,c@uni.ac.il,1,",                # third in pair 1
    ]) + "\n"
    with pytest.raises(InputErrors) as info:
        roster.parse(text, "r.csv")
    lines = info.value.lines()
    assert lines[0].startswith("r.csv:3: duplicate student_id '1'")
    assert lines[1].startswith("r.csv:4: missing required field last_name")
    assert lines[2].startswith("r.csv:5: malformed email")
    assert lines[3].startswith("r.csv:6: malformed SSH public key")
    assert lines[4].startswith("r.csv:8: pair '1' has more than 2 students")
    assert len(lines) == 5


def test_unknown_and_missing_columns() -> None:
    with pytest.raises(InputErrors) as info:
        roster.parse("student_id,first_name,last_name,mail,pair\n", "r.csv")
    assert [ln for ln in info.value.lines()] == [
        "r.csv:1: unknown column 'mail' (known: student_id, first_name, last_name, email, "
        "pair, ssh_public_key)",
        "r.csv:1: missing required column 'email'",
    ]


@pytest.mark.parametrize("key, why", [
    ("ssh-ed25519", "expected"),
    ("ssh-dss AAAA", "unknown key type"),
    ("ssh-ed25519 !!!!", "not valid base64"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==", "does not match its type"),
])
def test_bad_keys(key: str, why: str) -> None:
    assert why in (roster.check_ssh_key(key) or "")


def test_good_key() -> None:
    assert roster.check_ssh_key(fake_ed25519_key(__import__("random").Random(2), "c")) is None


def test_sample_class_parses() -> None:
    r = roster.parse(make_class(300), "big.csv")
    assert len(r.students) == 600
    assert all(len(m) == 2 for m in r.pairs().values())


def test_odd_pair_values() -> None:
    text = HEADER + "\n1,A,B,a@u.il,²\n2,C,D,c@u.il,1234567890123456789\n"
    with pytest.raises(InputErrors) as info:
        roster.parse(text, "r.csv")
    assert info.value.lines() == [
        "r.csv:3: pair value '1234567890123456789' is longer than 16 characters"]
    r = roster.parse(HEADER + "\n1,A,B,a@u.il,²\n", "r.csv")
    assert r.students[0].pair == "²"
