"""Subordinate UIDs/GIDs (rootless containers): allocated once per student, recorded in the
state file, written to /etc/subuid and /etc/subgid of every node, never overlapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.accounts.model import AccountsConfig, allocate, desired
from ops.accounts.plan import compute
from ops.accounts.snapshot import parse_snapshot
from ops.errors import InputError
from ops.roster import parse
from ops.state import OFFBOARDED, SUBID_COUNT, AccountsState, StateFile

CFG = AccountsConfig.from_vars({"accounts_expire_date": "2099-12-31"}, "all.yml")  # type: ignore[arg-type]
HEADER = "student_id,first_name,last_name,email,pair\n"
ROSTER = parse(HEADER + "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n3,Noa,Katz,n@u.il,2\n")


def test_each_student_gets_a_range_of_their_own_in_uid_order() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    starts = [st.students[s].subid for s in ("1", "2", "3")]
    assert starts == [1_000_000, 1_000_000 + SUBID_COUNT, 1_000_000 + 2 * SUBID_COUNT]
    assert st.subid_high == 1_000_000 + 3 * SUBID_COUNT - 1
    assert allocate(ROSTER, st, CFG, "s").students == st.students  # stable


def test_ranges_are_recorded_and_never_given_again(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    st = allocate(ROSTER, AccountsState(), CFG, sf.path)
    st.students["3"].status = OFFBOARDED
    sf.save(st)
    doc = json.loads(sf.path.read_text())
    assert doc["students"]["3"]["subid"] == 1_000_000 + 2 * SUBID_COUNT
    doc["subid_high"] = 0  # hand-edited down: the file's own ranges still count
    sf.path.write_text(json.dumps(doc))
    loaded = sf.load()
    newcomer = parse(HEADER + "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n4,Ori,Tal,o@u.il,3\n")
    again = allocate(newcomer, loaded, CFG, sf.path)
    assert again.students["4"].subid == 1_000_000 + 3 * SUBID_COUNT


def test_a_state_file_from_before_subids_gets_them() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    for r in st.students.values():
        r.subid = 0
    st.subid_high = 0
    again = allocate(ROSTER, st, CFG, "s")
    assert sorted(r.subid for r in again.students.values())[0] == 1_000_000


def test_two_students_with_one_range_are_refused(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.save(allocate(ROSTER, AccountsState(), CFG, sf.path))
    doc = json.loads(sf.path.read_text())
    doc["students"]["2"]["subid"] = doc["students"]["1"]["subid"]
    sf.path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="share one subordinate id range"):
        sf.load()


@pytest.mark.parametrize("subid_range", [[25000, 2_000_000], [90000, 200000],
                                         [1_000_000, 1_000_100]])
def test_the_range_cannot_overlap_real_ids_or_be_too_small(subid_range: list[int]) -> None:
    with pytest.raises(InputError, match="accounts_subid_range"):
        AccountsConfig.from_vars({"accounts_expire_date": "2099-12-31",  # type: ignore[arg-type]
                                  "accounts_subid_range": subid_range}, "a")


def test_a_used_up_range_is_an_input_error() -> None:
    two = [1_000_000, 1_000_000 + 2 * SUBID_COUNT - 1]  # room for two students, not three
    cfg = AccountsConfig.from_vars({"accounts_expire_date": "2099-12-31",  # type: ignore[arg-type]
                                    "accounts_subid_range": two}, "a")
    with pytest.raises(InputError, match="accounts_subid_range is used up"):
        allocate(ROSTER, AccountsState(), cfg, "s")


def plan_for(subuid: list[str], subgid: list[str] | None = None,  # noqa: ANN201
             state: AccountsState | None = None):
    st = state or allocate(ROSTER, AccountsState(), CFG, "s")
    snap = parse_snapshot(["#passwd", "#group", "#shadow", "#subuid", *subuid,
                           "#subgid", *(subuid if subgid is None else subgid)])
    plan = compute("gpu1", desired(st, ROSTER, CFG, homes=False), snap)
    return [c for c in plan.changes if c.kind == "subid"], plan


CONVERGED = ["dcohen:1000000:65536", "elevi:1065536:65536", "nkatz:1131072:65536"]


def test_an_empty_host_gets_every_range_in_both_files_and_keeps_other_lines() -> None:
    changes, plan = plan_for(["admin:100000:65536"])
    assert [(c.action, c.subject) for c in changes] == \
        [("add", "dcohen"), ("add", "elevi"), ("add", "nkatz")]
    assert changes[0].detail == "subuid+subgid 1000000-1065535"
    writes = {w.path: w.content for w in changes[0].write}
    assert writes["/etc/subuid"] == "admin:100000:65536\n" + "".join(f"{x}\n" for x in CONVERGED)
    assert writes["/etc/subgid"] == "admin:100000:65536\n" + "".join(f"{x}\n" for x in CONVERGED)
    steps = plan.stdin_steps()
    assert len(steps) == 2 and all("65536" not in cmd for cmd, _ in steps)
    assert "mv -f /etc/subuid.course-ops.new /etc/subuid" in steps[0][0]


def test_a_converged_host_has_no_subid_change() -> None:
    changes, plan = plan_for(CONVERGED)
    assert changes == [] and plan.conflicts == []


def test_a_changed_or_doubled_line_is_repaired_in_that_file_only() -> None:
    changes, _ = plan_for(["dcohen:5:65536", "elevi:1065536:65536", "nkatz:1131072:65536",
                           "nkatz:1131072:65536"], CONVERGED)
    assert [(c.action, c.subject, c.detail) for c in changes] == [
        ("change", "dcohen", "subuid 1000000-1065535"),
        ("change", "nkatz", "subuid 1131072-1196607")]
    assert [w.path for w in changes[0].write] == ["/etc/subuid"]


def test_an_offboarded_students_lines_go() -> None:
    st = allocate(ROSTER, AccountsState(), CFG, "s")
    st.students["3"].status = OFFBOARDED
    changes, _ = plan_for(CONVERGED, state=st)
    assert [(c.action, c.subject) for c in changes] == [("remove", "nkatz")]
    assert "nkatz" not in {w.path: w.content for w in changes[0].write}["/etc/subuid"]


def test_a_foreign_range_overlapping_a_students_is_a_conflict() -> None:
    _, plan = plan_for(["someone:1060000:10000", *CONVERGED])
    assert plan.conflicts == ["gpu1: /etc/subuid gives 'someone' ids 1060000-1069999, which "
                              "overlap dcohen's range", "gpu1: /etc/subuid gives 'someone' "
                              "ids 1060000-1069999, which overlap elevi's range",
                              "gpu1: /etc/subgid gives 'someone' ids 1060000-1069999, which "
                              "overlap dcohen's range", "gpu1: /etc/subgid gives 'someone' "
                              "ids 1060000-1069999, which overlap elevi's range"]
