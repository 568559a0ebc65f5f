"""Slurm associations planned from the state and one read of sacctmgr."""

from __future__ import annotations

from ops.accounts import slurm
from ops.accounts.model import AccountsConfig, allocate
from ops.accounts.snapshot import SlurmSnapshot, parse_snapshot
from ops.roster import parse
from ops.state import AccountsState

CFG = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31"}, "a")  # type: ignore[arg-type]
ROSTER = parse("student_id,first_name,last_name,email,pair\n"
               "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n3,Noa,Katz,n@u.il,2\n", "r.csv")


def state() -> AccountsState:
    return allocate(ROSTER, AccountsState(), CFG, "s")  # type: ignore[arg-type]


def test_empty_slurm_gets_everything_in_one_load() -> None:
    plan = slurm.plan("ctl", state(), "course", "course", SlurmSnapshot(cluster="lab"))
    subjects = [c.subject for c in plan.changes]
    assert subjects[:3] == ["account course", "account pair001", "account pair002"]
    assert "association dcohen@pair001" in subjects
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert len(apply_argv) == 1  # one sacctmgr load, whatever the class size
    text = apply_argv[0][-1]
    assert text.startswith("Cluster - 'lab'\n")
    assert "Account - 'pair001':Description='pair001':Organization='course':Fairshare=1:" \
           "QOS='course':DefaultQOS='course'" in text
    assert "Parent - 'pair001'\nUser - 'dcohen':DefaultAccount='pair001':Fairshare=1" in text


def converged() -> SlurmSnapshot:
    lines = ["#slurm-cluster", "lab", "#slurm-assoc", "root||", "root|root|",
             "course||root", "pair001||course", "pair001|dcohen|", "pair001|elevi|",
             "pair002||course", "pair002|nkatz|", "#slurm-users", "root|root",
             "dcohen|pair001", "elevi|pair001", "nkatz|pair002"]
    parsed = parse_snapshot(lines).slurm
    assert parsed is not None
    return parsed


def test_converged_slurm_has_no_change() -> None:
    assert slurm.plan("ctl", state(), "course", "course", converged()).changes == []


def test_leavers_and_moves_are_batched() -> None:
    st = state()
    st.students["3"].status = "left"  # nkatz leaves: association removed, history kept
    st.pairs["2"].status = "left"
    st.students["2"].pair = "9"  # elevi moves to a new single
    from ops.state import PairRecord

    st.pairs["9"] = PairRecord("pair009", 30009)
    plan = slurm.plan("ctl", st, "course", "course", converged())
    got = {(c.action, c.subject) for c in plan.changes if not c.argv}
    assert got == {("add", "account pair009"), ("add", "association elevi@pair009"),
                   ("change", "user elevi"), ("remove", "association elevi@pair001"),
                   ("remove", "association nkatz@pair002"), ("remove", "account pair002")}
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    calls = [a[:3] if a[0] == "sacctmgr" else ("load",) for a in apply_argv]
    assert calls == [("load",), ("sacctmgr", "-i", "modify"), ("sacctmgr", "-i", "delete"),
                     ("sacctmgr", "-i", "delete"), ("sacctmgr", "-i", "delete")]
