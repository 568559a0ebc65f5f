"""GPU budgets and `ops usage`: the budgets' inputs, their Slurm plan, and the report's
figures from recorded Slurm output (ops/slurm_usage.py, the code the controller runs too)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from ops import slurm_usage as su
from ops import usage as usage_mod
from ops.accounts import budgets, slurm
from ops.accounts.model import AccountsConfig, allocate
from ops.accounts.snapshot import parse_snapshot
from ops.errors import InputError, UsageError
from ops.roster import parse
from ops.state import AccountsState

ROOT = Path(__file__).resolve().parents[2]
CFG = AccountsConfig.from_vars({"accounts_expire_date": "2027-03-31"}, "a")  # type: ignore[arg-type]
ROSTER = parse("student_id,first_name,last_name,email,pair\n"
               "1,Dana,Cohen,d@u.il,1\n2,Eli,Levi,e@u.il,1\n3,Noa,Katz,n@u.il,2\n", "r.csv")

# ---------------------------------------------------------------- budgets' inputs


def _load(tmp_path: Path, text: str | None, **variables: object) -> budgets.Budgets:
    if text is not None:
        (tmp_path / "gpu-budgets.yml").write_text(text)
    return budgets.load(dict(variables), tmp_path, ROSTER)


def test_budgets_default_and_overrides(tmp_path: Path) -> None:
    b = _load(tmp_path, "# an extension\n'01': 150\n", slurm_pair_gpu_hours=100)
    assert b.minutes("1") == 150 * 60  # "01" is pair 1, as in the roster
    assert b.minutes("2") == 100 * 60
    b = _load(tmp_path, "2: 0.05\n1: null\n")
    assert (b.minutes("1"), b.minutes("2")) == (None, 3)  # 0.05 GPU-hours: 3 GPU-minutes


def test_no_budget_file_and_no_default_means_no_budgets(tmp_path: Path) -> None:
    assert _load(tmp_path, None).minutes("1") is None  # the role's default: null


@pytest.mark.parametrize("text, line, words", [
    ("1: 10\n7: 5\n", 2, "pair '7' is not in the roster"),
    ("1: 10\n01: 5\n", 2, "given twice"),
    ("2: -3\n", 1, "expected GPU-hours"),
    ("2: lots\n", 1, "expected GPU-hours"),
    ("2: true\n", 1, "expected GPU-hours"),
    ("- 1\n", 1, "expected a mapping"),
    ("1: [10\n", 2, "YAML syntax error"),
])
def test_bad_budget_files_name_their_line(tmp_path: Path, text: str, line: int,
                                          words: str) -> None:
    with pytest.raises(InputError) as e:
        _load(tmp_path, text)
    assert e.value.path == str(tmp_path / "gpu-budgets.yml") and e.value.line == line
    assert words in str(e.value)


def test_a_named_budget_file_must_exist_and_a_bad_default_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        _load(tmp_path, None, accounts_gpu_budgets="extensions.yml")
    with pytest.raises(InputError, match="slurm_pair_gpu_hours: expected GPU-hours"):
        _load(tmp_path, None, slurm_pair_gpu_hours="100h")


# ---------------------------------------------------------------- the Slurm plan


def _state() -> AccountsState:
    st = allocate(ROSTER, AccountsState(), CFG, "s")  # type: ignore[arg-type]
    from ops.state import StaffRecord

    st.staff["ta"] = StaffRecord(25000)
    return st


def _snap(pair001: str = "", pair002: str = "", coords: str = "course,course-staff,pair001"
          ) -> object:
    lines = ["#slurm-cluster", "lab", "#slurm-assoc", "root|||", "root|root||",
             "course||root|", "course-staff||course|", "course-staff|ta||",
             f"pair001||course|{pair001}", "pair001|dcohen||", "pair001|elevi||",
             f"pair002||course|{pair002}", "pair002|nkatz||", "#slurm-users", "root|root|",
             "dcohen|pair001|", "elevi|pair001|", "nkatz|pair002|", f"ta|course-staff|{coords}"]
    snap = parse_snapshot(lines).slurm
    assert snap is not None
    return snap


def test_budgets_are_set_in_one_call_per_distinct_value() -> None:
    b = budgets.Budgets(100.0, {"2": 150.0})
    plan = slurm.plan("ctl", _state(), "course", "course", _snap(), budgets=b)  # type: ignore[arg-type]
    got = {(c.action, c.subject, c.detail) for c in plan.changes if not c.argv}
    assert got == {("change", "budget pair001", "none->100 GPU-hours"),
                   ("change", "budget pair002", "none->150 GPU-hours")}
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert apply_argv == (
        ("sacctmgr", "-i", "modify", "account", "where", "name=pair001", "set",
         "GrpTRESMins=gres/gpu=6000"),
        ("sacctmgr", "-i", "modify", "account", "where", "name=pair002", "set",
         "GrpTRESMins=gres/gpu=9000"))


def test_budgets_in_step_change_nothing_and_a_removed_one_is_cleared() -> None:
    snap = _snap("cpu=10,gres/gpu=6000", "gres/gpu=6000")
    b = budgets.Budgets(100.0)
    assert slurm.plan("ctl", _state(), "course", "course", snap, budgets=b).changes == []  # type: ignore[arg-type]
    plan = slurm.plan("ctl", _state(), "course", "course", snap,  # type: ignore[arg-type]
                      budgets=budgets.Budgets(100.0, {"1": None}))
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert apply_argv == (("sacctmgr", "-i", "modify", "account", "where", "name=pair001",
                           "set", "GrpTRESMins=gres/gpu=-1"),)


def test_new_pairs_get_their_budget_after_the_load() -> None:
    from ops.accounts.snapshot import SlurmSnapshot

    plan = slurm.plan("ctl", _state(), "course", "course", SlurmSnapshot(cluster="lab"),
                      budgets=budgets.Budgets(2.0))
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert apply_argv[0][0] == "sh"  # the load makes the accounts first
    assert apply_argv[-1] == ("sacctmgr", "-i", "modify", "account", "where",
                              "name=pair001,pair002", "set", "GrpTRESMins=gres/gpu=120")
    assert ("add", "budget pair001", "2 GPU-hours") in {
        (c.action, c.subject, c.detail) for c in plan.changes}


def test_staff_coordinate_the_course_account_and_students_never_do() -> None:
    plan = slurm.plan("ctl", _state(), "course", "course", _snap(coords=""))  # type: ignore[arg-type]
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert ("sacctmgr", "-i", "add", "coordinator", "account=course", "names=ta") in apply_argv
    snap = _snap()
    snap.coordinates["nkatz"] = {"course", "pair001"}  # type: ignore[attr-defined]
    plan = slurm.plan("ctl", _state(), "course", "course", snap)  # type: ignore[arg-type]
    (apply,) = [c for c in plan.changes if c.argv]
    assert apply.argv[-1] == slurm.REFRESH_PAIR_COPIES  # course-usage's copy, now
    apply_argv = apply.argv[:-1]
    assert apply_argv == (("sacctmgr", "-i", "delete", "coordinator", "account=course",
                           "names=nkatz"),)


# ---------------------------------------------------------------- the report

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
H = 3600


def _assoc(account: str, user: str = "", parent: str = "course", limit: str = "N",
           used: str = "0", run: str = "0") -> str:
    uname = f"{user}(20000)" if user else ""
    return (f"ClusterName=course Account={account} UserName={uname} Partition= Priority=0 "
            f"ID=3 SharesRaw/Norm/Level/Factor=1/0.00/1/0.00 UsageRaw/Norm/Efctv=0.00/1.00/1.00 "
            f"ParentAccount={parent}(2) Lft=1 DefAssoc=No GrpJobs=N(0) GrpWall=N(0.00) "
            f"GrpTRES=cpu=N(0),mem=N(0),gres/gpu=N(0) "
            f"GrpTRESMins=cpu=N(0),mem=N(25732),energy=N(0),gres/gpu={limit}({used}) "
            f"GrpTRESRunMins=cpu=N(0),gres/gpu=N({run}) MaxJobs= MaxTRESPJ= MinPrioThresh=")


def _output(jobs: list[str], offset: str = "+0000") -> str:
    return "\n".join([
        f"#window {T0} {T0 + 48 * H} {T0 + 30 * H} {offset}", "#jobs", *jobs, "#assoc",
        "Current Association Manager state", "Association Records",
        _assoc("root", parent=""), _assoc("course", parent="root"),
        _assoc("course-staff"), _assoc("course-staff", "ta"),
        _assoc("pair001", limit="600", used="90", run="60"), _assoc("pair001", "dcohen"),
        _assoc("pair001", "elevi"), _assoc("pair002"), _assoc("pair002", "nkatz"),
        "#nodes", "gpu1|gpu:2", "gpu2|gpu:2(S:0-1),tmpdisk:10", "gpu2|gpu:2(S:0-1),tmpdisk:10"])


JOBS = [
    # 1 GPU for 2 h inside the window
    f"101|dcohen|pair001|cpu=2,gres/gpu=1,mem=4G,node=1|2|{T0 + H}|{T0 + 3 * H}|COMPLETED",
    # 2 GPUs, started an hour before the window: only its hour inside counts
    f"102|elevi|pair001|cpu=4,gres/gpu=2,node=1|4|{T0 - H}|{T0 + H}|COMPLETED",
    # still running (End Unknown): counted up to now (T0 + 30 h)
    f"103|nkatz|pair002|cpu=1,gres/gpu=1,node=1|1|{T0 + 28 * H}|Unknown|RUNNING",
    # a CPU job, and one that never started
    f"104|nkatz|pair002|cpu=8,node=1|8|{T0 + 2 * H}|{T0 + 4 * H}|COMPLETED",
    "105|dcohen|pair001||0|Unknown|Unknown|PENDING",
    # the staff's job is outside the pairs
    f"106|ta|course-staff|cpu=1,gres/gpu=1|1|{T0}|{T0 + H}|COMPLETED",
]


def test_the_report_counts_each_jobs_gpu_and_cpu_time_inside_the_window() -> None:
    rep = su.report(su.parse(_output(JOBS)), "course", pair_names={"pair001": "1"})
    p1, p2 = rep["pairs"]
    assert (p1["pair"], p1["account"], p2["pair"]) == ("1", "pair001", "pair002")
    assert (p1["jobs"], p1["gpu_hours"], p1["cpu_hours"]) == (2, 2 + 2, 2 * 2 + 4)
    assert p1["students"] == [
        {"username": "dcohen", "jobs": 1, "gpu_hours": 2.0, "cpu_hours": 4.0},
        {"username": "elevi", "jobs": 1, "gpu_hours": 2.0, "cpu_hours": 4.0}]
    assert (p2["jobs"], p2["gpu_hours"], p2["cpu_hours"]) == (2, 2.0, 2 + 16)
    assert (p1["budget_gpu_hours"], p1["budget_used_gpu_hours"], p1["budget_used_percent"]) \
        == (10.0, 1.5, 15.0)  # Slurm's own figure, not the window's sum
    assert (p2["budget_gpu_hours"], p2["budget_used_percent"]) == (None, None)
    assert rep["others"] == [{"account": "course-staff", "username": "ta", "jobs": 1,
                              "gpu_hours": 1.0, "cpu_hours": 1.0}]
    assert rep["gpus"] == 4  # gpu2 is listed once per partition: counted once


def test_occupancy_is_per_day_of_the_controllers_clock() -> None:
    rep = su.report(su.parse(_output(JOBS)), "course")
    days = {o["date"]: o for o in rep["occupancy"]}
    assert list(days) == ["2026-09-21", "2026-09-22", "2026-09-23"]
    # day 1 (14:13:20 .. 24:00 inside the window): 2 + 2 + 1 GPU-hours of 4 GPUs
    assert days["2026-09-21"]["gpu_hours"] == 5.0
    first = 24 * H - (T0 % 86400)
    assert days["2026-09-21"]["percent"] == round(100 * 5 * H / (4 * first), 1)
    # the running job: from T0+28h to now (T0+30h), across midnight
    assert days["2026-09-22"]["gpu_hours"] + days["2026-09-23"]["gpu_hours"] == 2.0
    east = su.report(su.parse(_output(JOBS, "+0300")), "course")
    assert east["since"].endswith("+03:00") and east["occupancy"][0]["date"] == "2026-09-21"


def test_json_csv_and_table_carry_the_same_figures() -> None:
    rep = su.report(su.parse(_output(JOBS)), "course")
    doc = json.loads(json.dumps(rep))
    assert set(doc) == {"since", "until", "generated", "gpus", "pairs", "others", "occupancy"}
    assert set(doc["pairs"][0]) == {"pair", "account", "jobs", "gpu_hours", "cpu_hours",
                                    "budget_gpu_hours", "budget_used_gpu_hours",
                                    "budget_used_percent", "students"}
    assert set(doc["pairs"][0]["students"][0]) == {"username", "jobs", "gpu_hours",
                                                   "cpu_hours"}
    rows = su.to_csv(rep).splitlines()
    assert rows[1] == "pair001,pair001,,2,4.0,8.0,10.0,1.5,15.0"
    assert rows[2] == "pair001,pair001,dcohen,1,2.0,4.0,,,"
    text = su.to_text(rep)
    assert "pair002" in text and "  nkatz" in text


def test_a_controller_that_cannot_read_slurm_says_so() -> None:
    with pytest.raises(su.UsageError, match="sacct failed"):
        su.parse(f"#window {T0} {T0} {T0} +0000\n#jobs\n#error: sacct failed\n")
    with pytest.raises(su.UsageError, match="no answer"):
        su.parse("sh: 1: sacct: not found\n")


def test_deadlines_come_from_the_sites_schedule() -> None:
    site = ROOT / "examples" / "course-site"
    rows = yaml.safe_load((site / "_data" / "schedule.yml").read_text())
    pages = {p.stem for p in (site / "_assignments").glob("*.md")}
    got = su.deadlines(rows, pages)
    assert ("2026-11-15", "hw1") in got and ("2026-11-22", "hw2") in got
    assert not [label for _d, label in got if "published" in label]
    assert su.deadlines([{"date": dt.date(2027, 1, 3), "homework": "Project due"},
                         {"date": "soon", "homework": "hw9"}, "junk"], set()) == [
        ("2027-01-03", "Project due")]
    assert su.deadlines({"not": "a list"}) == []
    # a page's own due date wins over the week that lists it
    assert su.deadlines(rows, {"hw1": "2026-11-15", "hw2": "2026-12-06"}) == [
        ("2026-11-15", "hw1"), ("2026-12-06", "hw2")]


def test_the_sites_pages_give_their_due_dates() -> None:
    from ops import inventory as inv_mod

    inv = inv_mod.load(ROOT / "inventory" / "example")
    assert usage_mod.site_deadlines(inv) == [("2026-11-15", "hw1"), ("2026-12-06", "hw2")]


def test_the_plot_gets_the_pairs_budgets_and_deadlines(tmp_path: Path) -> None:
    rep = su.report(su.parse(_output(JOBS)), "course", pair_names={"pair001": "1"})
    series = su.plot_series(rep, [("2026-09-22", "hw1"), ("2027-01-01", "later")])
    assert series["pairs"] == ["1", "pair002"]
    assert series["gpu_hours"] == [4.0, 2.0] and series["budgets"] == [10.0, None]
    assert series["deadlines"] == [("2026-09-22", "hw1")]  # inside the window only
    assert series["days"] == ["2026-09-21", "2026-09-22", "2026-09-23"]
    png = tmp_path / "u.png"
    su.draw(series, str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 800)  # 8 x 8 inches at 100 dpi


def test_the_staff_page_escapes_what_it_shows() -> None:
    rep = su.report(su.parse(_output(JOBS)), "course", pair_names={"pair001": "<b>1</b>"})
    page = su.to_html(rep)
    assert "&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page
    assert 'src="usage.png"' in page


def test_when_flags_are_checked_before_any_host() -> None:
    assert usage_mod.check_when("--since", "2026-10-18") == "2026-10-18"
    assert usage_mod.check_when("--until", "now") == "now"
    for bad in ("yesterday", "2026-02-30", "2026-10-18; rm -rf /"):
        with pytest.raises(UsageError, match="expected a date"):
            usage_mod.check_when("--since", bad)


def test_the_gpu_jobs_each_pair_holds_are_read_from_roots_squeue() -> None:
    listing = "41|dcohen|pair001|gres:gpu:1\n42|elevi|pair001|N/A\n43|nkatz|pair002|gres:gpu:0\n"
    assert su.gpu_jobs(listing) == {
        "pair001": [{"job": "41", "user": "dcohen", "gres": "gres:gpu:1"}]}
    assert "budget is spent" in su.REASONS["AssocGrpGRESMinutes"]
