"""Course staff (accounts_staff): accounts like students', outside the pairs, sudo only
where marked, their own Slurm account, the hub's admins; and the hub's list of users."""

from __future__ import annotations

import hashlib
import json
import types

import pytest

from ops.accounts import slurm as slurm_mod
from ops.accounts.model import AccountsConfig, allocate, desired
from ops.accounts.plan import compute
from ops.accounts.snapshot import SlurmSnapshot, parse_snapshot
from ops.errors import InputError
from ops.roster import parse
from ops.state import LEFT, AccountsState

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0gFZbL6vPp3a3n2k2kq1u3u9mH3rj4qYtqfY1w8Zb ta"
STAFF = [{"username": "chaim", "name": "Chaim Baskin", "email": "Chaim@U.IL", "keys": [KEY],
          "sudo": True},
         {"username": "ta1", "name": "Teaching Assistant", "email": "ta1@u.il"}]
HEADER = "student_id,first_name,last_name,email,pair\n"
ROSTER = parse(HEADER + "1,Dana,Cohen,d@u.il,1\n2,Tom,A1,t@u.il,1\n3,Chaim,Levi,c@u.il,2\n")


def cfg(staff: object = STAFF, **more: object) -> AccountsConfig:
    return AccountsConfig.from_vars({"accounts_expire_date": "2099-12-31",  # type: ignore[arg-type]
                                     "accounts_staff": staff, **more}, "all.yml")


@pytest.mark.parametrize("staff, why", [
    ([{"username": "root", "name": "x"}], "reserved system name"),
    ([{"username": "Chaim"}], "not a valid POSIX name"),
    ([{"username": "ta1"}, {"username": "ta1"}], "'ta1' is listed twice"),
    ([{"username": "ta1", "keys": ["ssh-rsa nope"]}], "ta1: malformed SSH public key"),
    ([{"username": "ta1", "sudo": "yes please"}], "ta1: sudo must be true or false"),
    ([{"username": "ta1", "shoe": 42}], "expected the keys username"),
    ({"ta1": {}}, "expected a list"),
])
def test_bad_staff_entries_are_input_errors(staff: object, why: str) -> None:
    with pytest.raises(InputError, match=why):
        cfg(staff)


def test_staff_get_uids_from_the_range_and_students_avoid_their_names() -> None:
    st = allocate(ROSTER, AccountsState(), cfg(), "s")
    assert {n: m.uid for n, m in st.staff.items()} == {"chaim": 20003, "ta1": 20004}
    assert st.students["2"].username == "ta12"  # Tom A1 would have been "ta1"
    assert all(m.subid for m in st.staff.values())
    again = allocate(ROSTER, st, cfg(), "s")
    assert again.staff == st.staff


def test_a_staff_member_named_like_an_existing_student_is_refused() -> None:
    st = allocate(ROSTER, AccountsState(), cfg([]), "s")
    with pytest.raises(InputError, match="'dcohen' is a student's username already"):
        allocate(ROSTER, st, cfg([{"username": "dcohen"}]), "s")


def test_staff_accounts_are_outside_the_pairs_with_sudo_only_where_marked() -> None:
    c = cfg()
    st = allocate(ROSTER, AccountsState(), c, "s")
    want = desired(st, ROSTER, c, homes=True)
    chaim, ta = want.users["chaim"], want.users["ta1"]
    assert chaim.groups == {"course-staff", "sudo"} and ta.groups == {"course-staff"}
    assert "docker" not in chaim.groups | ta.groups and c.course_group not in ta.groups
    assert chaim.keys == (KEY,) and chaim.expire_days is None
    assert want.groups["course-staff"] == 19998
    assert want.dirs["/home/chaim"].mode == 0o700
    plan = compute("ctl", want, parse_snapshot([]))
    useradd = next(c for c in plan.changes if (c.kind, c.subject) == ("user", "chaim")).argv[0]
    assert useradd[useradd.index("-e") + 1] == ""  # never expires
    assert useradd[useradd.index("-G") + 1] == "course-staff,sudo"


def test_staff_no_longer_listed_are_locked() -> None:
    st = allocate(ROSTER, AccountsState(), cfg(), "s")
    after = allocate(ROSTER, st, cfg(STAFF[:1]), "s")
    assert after.staff["ta1"].status == LEFT
    u = desired(after, ROSTER, cfg(STAFF[:1]), homes=True).users["ta1"]
    assert u.locked and u.groups == frozenset()


def test_staff_have_a_slurm_account_without_the_pairs_qos() -> None:
    st = allocate(ROSTER, AccountsState(), cfg(), "s")
    plan = slurm_mod.plan("ctl", st, "course", "course", SlurmSnapshot(cluster="lab"),
                          "course-staff")
    text = next(c for c in plan.changes if c.argv).argv[0][-1]
    assert "Account - 'course-staff':Description='course-staff':Organization='course':" \
           "Fairshare=1\n" in text
    assert "Parent - 'course-staff'\nUser - 'chaim':DefaultAccount='course-staff'" in text


def context(c: AccountsConfig, roster=ROSTER):  # noqa: ANN001, ANN201
    return types.SimpleNamespace(cfg=c, roster=roster, inv=types.SimpleNamespace(vars={}))


def test_the_hubs_users_follow_the_roster_and_the_staff() -> None:
    from ops.accounts.sync import hub_users

    c = cfg()
    st = allocate(ROSTER, AccountsState(), c, "s")
    two = parse(HEADER + "1,Dana,Cohen,d@u.il,1\n2,Tom,A1,t@u.il,1\n")
    st = allocate(two, st, c, "s")  # the third student left: locked, no hub login
    doc = json.loads(hub_users(context(c, two), st))  # type: ignore[arg-type]
    assert doc == {"allowed": ["chaim", "dcohen", "ta1", "ta12"], "admins": ["chaim", "ta1"],
                   "emails": {"chaim@u.il": "chaim", "d@u.il": "dcohen", "t@u.il": "ta12",
                              "ta1@u.il": "ta1"}}


def test_the_hubs_users_file_is_written_only_where_the_hub_is_and_only_when_it_differs(
        ) -> None:
    from ops.accounts.sync import hub_users, hub_users_change

    c = cfg()
    st = allocate(ROSTER, AccountsState(), c, "s")
    ctx = context(c)
    assert hub_users_change(ctx, st, "ctl", parse_snapshot([])) is None  # no hub here
    change = hub_users_change(ctx, st, "ctl", parse_snapshot(["#hub", "none"]))
    assert change is not None and change.action == "add"
    (write,) = change.write
    assert (write.path, write.mode, write.group) == \
        ("/etc/jupyterhub/course-users.json", "0640", "jupyterhub")
    assert "course-users.json" in write.step()[0] and "dcohen" not in write.step()[0]
    digest = hashlib.sha256(hub_users(ctx, st).encode()).hexdigest()  # type: ignore[arg-type]
    assert hub_users_change(ctx, st, "ctl", parse_snapshot(
        ["#hub", f"{digest}  /etc/jupyterhub/course-users.json"])) is None
