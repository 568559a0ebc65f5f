"""`ops images outdated` / `update` without an engine: recorded apt and pip-audit output,
the Debian lock and the base-tag rule, the plan, the JSON document and its schema, the
summary, the exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from ops.errors import ExitCode, InputError, OpsError
from ops.images import debian
from ops.images import outdated as od
from ops.images import spec as spec_mod
from ops.images import update as up

DATA = Path(__file__).parent / "data"
BOOT = "course-ops/course-base:bookworm-36d9e3ede037"


def _resolution() -> debian.Resolution:
    installed = debian.parse_dpkg((DATA / "dpkg-course-bootstrap.txt").read_text())
    changes = debian.parse_simulation((DATA / "apt-dist-upgrade-bookworm.txt").read_text())
    return debian.Resolution(installed, changes)


def _lock(packages: dict[str, str], bootstrap: str = BOOT,
          path: Path = Path("base/packages.lock")) -> debian.DebianLock:
    return debian.parse_lock(path, debian.format_lock(bootstrap, packages))


# ------------------------------------------------------------------ apt's recorded output


def test_the_simulation_gives_each_new_version_and_its_archive() -> None:
    changes = debian.parse_simulation((DATA / "apt-dist-upgrade-bookworm.txt").read_text())
    assert len([c for c in changes.values() if c.new]) == 46 + 4
    ssl = changes["libssl3"]
    assert (ssl.old, ssl.new) == ("3.0.20-1~deb12u2", "3.0.22-1~deb12u2")
    assert ssl.origins == ("Debian-Security:12/oldstable-security",) and ssl.security
    assert changes["libpam-modules-bin"].new == "1.5.2-6+deb12u3"  # trailing [..] groups
    assert changes["libass9"].old == "1:0.17.1-1"  # an epoch
    assert not changes["base-files"].security  # a point release
    assert not changes["libgnutls30"].security  # bookworm-updates
    assert changes["libc6"].security  # in two archives, one of them security
    assert changes["libnew1"].old is None and changes["libnew1"].new == "1.0-1"
    assert changes["libgdbm-compat4"].new is None


@pytest.mark.parametrize(("origin", "security"), [
    ("Debian-Security:12/oldstable-security", True),
    ("Debian-Security:13/stable-security", True),
    ("Debian:12.12/oldstable", False),
    ("Debian:12-updates/oldstable-updates", False),
    ("Ubuntu:24.04/noble-security", True),
])
def test_security_archives_are_told_apart(origin: str, security: bool) -> None:
    assert debian.is_security(origin) is security


def test_pending_updates_against_the_lock_mark_security_ones() -> None:
    resolution = _resolution()
    lock = _lock(resolution.installed)  # locked as debootstrap made it
    pending = {p.name: p for p in debian.pending(lock, resolution)}
    assert len(pending) == 46 + 5
    assert pending["openssl"].security and pending["openssl"].locked == "3.0.20-1~deb12u2"
    assert not pending["base-files"].security
    assert pending["base-files"].candidate == "12.4+deb12u16"
    assert not pending["libgnutls30"].security
    assert pending["libnew1"].locked is None and pending["libnew1"].candidate == "1.0-1"
    assert pending["libgdbm-compat4"].candidate is None
    assert sum(p.security for p in pending.values()) == 46 + 1


def test_a_lock_that_has_every_update_has_nothing_pending() -> None:
    resolution = _resolution()
    assert debian.pending(_lock(resolution.resolved), resolution) == []


def test_security_only_relock_takes_only_the_security_updates() -> None:
    resolution = _resolution()
    old = _lock(resolution.installed)
    new = debian.relocked(old, resolution, security_only=True)
    assert new["openssl"] == "3.0.22-1~deb12u2" and new["libc6"] == "2.36-9+deb12u15"
    assert new["base-files"] == "12.4+deb12u15"  # a regular update: left
    assert new["libgnutls30"] == "3.7.9-2+deb12u7"
    assert "libnew1" not in new and "libgdbm-compat4" in new
    assert debian.relocked(old, resolution, security_only=False) == resolution.resolved
    left = debian.pending(_lock(new), resolution)
    assert left and not any(p.security for p in left)


def test_apply_plan_installs_what_differs_and_purges_what_is_not_locked() -> None:
    install, purge = debian.apply_plan({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2",
                                                                        "d": "3"})
    assert install == ["b=2", "d=3"] and purge == ["c"]


# ------------------------------------------------------------------ the base-tag rule


def test_the_same_package_list_at_another_version_is_another_base_tag() -> None:
    installed = _resolution().installed
    one = _lock(installed)
    other = _lock({**installed, "libssl3": "3.0.22-1~deb12u2"})
    assert debian.locked_tag(BOOT, one).startswith(BOOT + "-")
    assert debian.locked_tag(BOOT, one) != debian.locked_tag(BOOT, other)
    assert debian.locked_tag(BOOT, one) == debian.locked_tag(BOOT, _lock(dict(installed)))


def test_the_base_tag_ignores_comments_and_order_but_not_the_package_list() -> None:
    lock = _lock({"libb": "2", "liba": "1"})
    shuffled = debian.parse_lock(Path("x"),
                                 "# a comment\nlibb=2\n\nliba=1\n# bootstrap: " + BOOT)
    assert debian.locked_tag(BOOT, lock) == debian.locked_tag(BOOT, shuffled)
    other_list = "course-ops/course-base:bookworm-0123456789ab"
    assert debian.locked_tag(other_list, lock) != debian.locked_tag(BOOT, lock)


def test_a_new_base_tag_is_a_new_course_image_tag(tmp_path: Path) -> None:
    """The course image's tag hashes its base's name (FROM) and id."""
    copy = tmp_path / "course"
    shutil.copytree(spec_mod.COURSE_DIR, copy, ignore=shutil.ignore_patterns("build"))
    spec = spec_mod.load(copy)
    variant = spec.variant("cpu")
    lock = spec_mod.parse_lock(spec.lock_path("cpu"))
    installed = _resolution().installed
    tags = {spec_mod.context(spec, variant, lock, base=debian.locked_tag(BOOT, _lock(pk)),
                             base_id="sha256:" + "1" * 64).tag
            for pk in (installed, {**installed, "libssl3": "3.0.22-1~deb12u2"})}
    assert len(tags) == 2


def test_the_committed_course_lock_is_for_the_committed_package_list() -> None:
    from ops import rootfs
    from ops.images import build as build_mod

    spec = spec_mod.load()
    assert spec.debian_lock_path is not None
    lock = debian.parse_lock(spec.debian_lock_path)
    wanted = rootfs.base_image_tag(spec.base_debootstrap, build_mod.BASE_REPOSITORY,
                                build_mod.BASE_CHANGES)
    debian.check_bootstrap(lock, wanted)
    listed = [ln.split("#")[0].strip() for ln in
              (spec.base_debootstrap / "packages.txt").read_text().splitlines()]
    assert all(name in lock.packages for name in listed if name)


def test_a_lock_made_for_another_package_list_is_refused() -> None:
    with pytest.raises(InputError, match=r"made for .*bookworm-0123456789ab.* now makes"):
        debian.check_bootstrap(_lock({"liba": "1"},
                                     "course-ops/course-base:bookworm-0123456789ab"), BOOT)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("liba=1\nnot a package\n", 2, "expected package=version"),
    ("liba=1\nliba=2\n", 2, "liba is locked twice"),
    ("# only comments\n", None, "no package locked"),
])
def test_a_bad_debian_lock_names_its_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(InputError, match=message) as exc:
        debian.parse_lock(Path("base/packages.lock"), text)
    assert exc.value.line == line


def test_a_missing_debian_lock_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ops images lock --debian"):
        debian.parse_lock(tmp_path / "packages.lock")


@pytest.mark.parametrize(("env", "security"), [
    ({"OPS_LAB_MIRROR": "http://mirror.example.edu/debian"},
     "http://mirror.example.edu/debian-security"),
    ({"OPS_LAB_MIRROR": "http://mirror.example.edu/deb", "OPS_SECURITY_MIRROR": "http://s/x/"},
     "http://s/x"),
    ({"OPS_LAB_MIRROR": "http://mirror.example.edu/deb"}, "http://deb.debian.org/debian-security"),
])
def test_the_security_archive_follows_the_mirror(env: dict, security: str) -> None:
    where = debian.archives(env)
    assert where.security == security
    assert f"deb {where.security} bookworm-security main" in where.sources_list()
    assert f"deb {where.mirror} bookworm-updates main" in where.sources_list()


# ------------------------------------------------------------------ the report and its JSON


def _report(tmp: Path, **debian_kw: object) -> od.Report:
    pk = [
        od.PyPackage("platformdirs", "rest", "4.14.8", "4.14.9", "4.14.9"),
        od.PyPackage("torch", "torch", "2.13.0+cpu", "2.13.0+cpu", "2.15.0", "2.13.0+cpu"),
        od.PyPackage("mpmath", "torch", "1.3.0", "1.3.0", "1.4.1"),
        od.PyPackage("tqdm", "rest", "4.67.1", "4.67.1", "4.67.1"),
    ]
    d = {"base": BOOT, "lock": tmp / "base" / "packages.lock", "status": "checked",
         "packages": [debian.Pending("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2",
                                     "Debian-Security:12/oldstable-security", True)],
         **debian_kw}
    return od.Report(tmp, [od.VariantReport("cpu", tmp / "lock" / "cpu.txt", pk)],
                     od.DebianReport(**d))  # type: ignore[arg-type]


#: The document `ops images outdated --format json` prints for _report(): pinned field by
#: field. A change to it is a change to outdated.schema.json and its version.
GOLDEN = {
    "schema": 1,
    "image": "IMG",
    "outdated": True,
    "python": [{
        "variant": "cpu", "lock": "IMG/lock/cpu.txt", "error": None,
        "packages": [
            {"name": "platformdirs", "layer": "rest", "locked": "4.14.8", "wanted": "4.14.9",
             "latest": "4.14.9", "pinned": None, "outdated": True},
            {"name": "torch", "layer": "torch", "locked": "2.13.0+cpu", "wanted": "2.13.0+cpu",
             "latest": "2.15.0", "pinned": "2.13.0+cpu", "outdated": False},
            {"name": "mpmath", "layer": "torch", "locked": "1.3.0", "wanted": "1.3.0",
             "latest": "1.4.1", "pinned": None, "outdated": False},
            {"name": "tqdm", "layer": "rest", "locked": "4.67.1", "wanted": "4.67.1",
             "latest": "4.67.1", "pinned": None, "outdated": False},
        ],
    }],
    "debian": {
        "base": BOOT, "lock": "IMG/base/packages.lock", "status": "checked", "error": None,
        "packages": [{"name": "libssl3", "locked": "3.0.20-1~deb12u2",
                      "candidate": "3.0.22-1~deb12u2",
                      "origin": "Debian-Security:12/oldstable-security", "security": True}],
    },
    "errors": [],
}


def test_the_json_document_is_pinned_and_valid_against_its_schema(tmp_path: Path) -> None:
    doc = json.loads(od.dumps(_report(tmp_path)).replace(str(tmp_path), "IMG"))
    assert doc == GOLDEN
    jsonschema.validate(doc, json.loads(od.SCHEMA.read_text()))


def _schema_keys(schema: dict) -> dict[str, set[str]]:
    out = {"": set(schema["properties"])}
    out["python"] = set(schema["properties"]["python"]["items"]["properties"])
    out["python.packages"] = set(
        schema["properties"]["python"]["items"]["properties"]["packages"]["items"]["properties"])
    out["debian"] = set(schema["properties"]["debian"]["properties"])
    out["debian.packages"] = set(
        schema["properties"]["debian"]["properties"]["packages"]["items"]["properties"])
    return out


def test_the_schema_names_every_field_and_requires_them_all() -> None:
    schema = json.loads(od.SCHEMA.read_text())
    keys = _schema_keys(schema)
    assert keys == {"": set(GOLDEN), "python": set(GOLDEN["python"][0]),
                    "python.packages": set(GOLDEN["python"][0]["packages"][0]),
                    "debian": set(GOLDEN["debian"]),
                    "debian.packages": set(GOLDEN["debian"]["packages"][0])}
    assert set(schema["required"]) == keys[""]
    assert schema["properties"]["schema"]["const"] == od.SCHEMA_VERSION


@pytest.mark.parametrize("bad", [
    {"outdated": "yes"},
    {"extra": 1},
    {"debian": {**GOLDEN["debian"], "status": "fine"}},
])
def test_the_schema_refuses_a_wrong_document(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**GOLDEN, **bad}, json.loads(od.SCHEMA.read_text()))


@pytest.mark.parametrize(("debian_kw", "outdated"), [
    ({"packages": []}, True),  # platformdirs still is
])
def test_outdated_is_python_or_debian(tmp_path: Path, debian_kw: dict, outdated: bool) -> None:
    report = _report(tmp_path, **debian_kw)
    assert report.outdated is outdated
    report.variants[0].packages = [p for p in report.variants[0].packages if not p.outdated]
    assert report.outdated is False  # held-back packages are not outdated
    report.debian.status = "unlocked"
    assert report.outdated is True


def test_held_back_is_only_latest_newer() -> None:
    held = od.PyPackage("mpmath", "torch", "1.3.0", "1.3.0", "1.4.1")
    assert held.held and not held.outdated
    moving = od.PyPackage("platformdirs", "rest", "4.14.8", "4.14.9", "4.14.9")
    assert moving.outdated and not moving.held


def test_uvs_output_gives_versions_by_normalized_name() -> None:
    text = "Jinja2==3.1.6\n    # via torch\nnumba-cuda[cu13]==0.30.4\ntorch==2.13.0+cpu\n"
    assert od.parse_requirements_out(text) == {"jinja2": "3.1.6", "numba-cuda": "0.30.4",
                                               "torch": "2.13.0+cpu"}


# ------------------------------------------------------------------ pip-audit


def test_pip_audit_output_gives_the_vulnerabilities() -> None:
    audit = od.parse_audit(json.loads((DATA / "pip-audit-vulnerable.json").read_text()))
    assert audit.unavailable is None and audit.audited == 4 and audit.skipped == 1
    assert [(v.package, v.id, v.fix_versions) for v in audit.vulnerabilities] == [
        ("jinja2", "GHSA-h75v-3vvj-5mfj", ("3.1.4",)),
        ("jupyterhub", "GHSA-example-held", ("5.2.1",)),
        ("tqdm", "PYSEC-example-nofix", ()),
    ]


def test_pip_audit_answering_for_no_package_is_an_unavailable_source() -> None:
    audit = od.parse_audit(json.loads((DATA / "pip-audit-unreachable.json").read_text()))
    assert audit.audited == 0 and audit.unavailable is not None
    assert "answered for none" in audit.unavailable


def test_a_security_fix_is_taken_only_where_a_relock_reaches_it() -> None:
    audit = od.parse_audit(json.loads((DATA / "pip-audit-vulnerable.json").read_text()))
    rows = [od.PyPackage("jinja2", "torch", "3.1.3", "3.1.6", "3.1.6"),
            od.PyPackage("jupyterhub", "rest", "4.1.6", "4.1.6", "5.4.0", "4.1.6"),
            od.PyPackage("tqdm", "rest", "4.66.2", "4.67.1", "4.67.1"),
            od.PyPackage("numpy", "torch", "2.3.0", "2.3.0", "2.3.0")]
    fixes, notes = od.security_fixes(audit.vulnerabilities, rows)
    assert fixes == [od.Fix("jinja2", "3.1.3", "3.1.6", ("GHSA-h75v-3vvj-5mfj",))]
    assert any("jupyterhub" in n and "image.yml pins 4.1.6" in n for n in notes)
    assert any("tqdm" in n and "no fixed release" in n for n in notes)


@pytest.mark.parametrize(("stderr", "says"), [
    ("requests.exceptions.ProxyError: HTTPSConnectionPool(host='pypi.org')", "unreachable"),
    ("urllib3.exceptions.NameResolutionError: ...", "unreachable"),
    ("something else broke", "pip-audit failed (exit 1): something else broke"),
])
def test_a_pip_audit_failure_is_one_line(stderr: str, says: str) -> None:
    assert says in od._audit_failure(1, stderr)


# ------------------------------------------------------------------ the plan


def test_the_plan_moves_every_outdated_package_and_the_debian_lock(tmp_path: Path) -> None:
    plan = up.plan(_report(tmp_path))
    assert plan.python == {"cpu": ["platformdirs"]} and plan.debian
    assert plan.reasons[("debian", "libssl3")] == "security"


def test_security_only_without_advisory_data_moves_only_debian(tmp_path: Path) -> None:
    audits = {"cpu": od.Audit(unavailable="PyPI's advisory data is unreachable (ProxyError)")}
    plan = up.plan(_report(tmp_path), security_only=True, audits=audits)
    assert plan.python == {} and plan.debian
    assert any("Python security fixes not checked" in n and "unreachable" in n
               for n in plan.notes)


def test_security_only_leaves_regular_debian_updates(tmp_path: Path) -> None:
    regular = debian.Pending("base-files", "12.4+deb12u15", "12.4+deb12u16",
                             "Debian:12.16/oldstable", False)
    report = _report(tmp_path, packages=[regular])
    audits = {"cpu": od.Audit(audited=4)}
    plan = up.plan(report, security_only=True, audits=audits)
    assert plan.empty
    assert any("1 regular update(s) left" in n for n in plan.notes)
    assert not up.plan(report).empty


def test_named_packages_only_leave_the_rest_and_the_base(tmp_path: Path) -> None:
    plan = up.plan(_report(tmp_path), packages=["PlatformDirs"])
    assert plan.python == {"cpu": ["platformdirs"]} and not plan.debian
    assert up.plan(_report(tmp_path), packages=["tqdm"]).empty


def test_nothing_outdated_is_an_empty_plan(tmp_path: Path) -> None:
    report = _report(tmp_path, packages=[])
    report.variants[0].packages = [p for p in report.variants[0].packages if not p.outdated]
    assert up.plan(report).empty


def test_an_apt_error_is_a_note_not_a_move(tmp_path: Path) -> None:
    plan = up.plan(_report(tmp_path, status="error", error="apt cannot read the mirror",
                           packages=[]))
    assert not plan.debian and any("apt cannot read" in n for n in plan.notes)


def test_moves_name_what_came_along() -> None:
    got = up.moves("cpu", {"a": "1", "b": "1", "c": "1"}, {"a": "2", "b": "1", "d": "1"},
                   {("cpu", "a"): "update"})
    assert got == [up.Move("cpu", "a", "1", "2", "update"),
                   up.Move("cpu", "c", "1", None, "removed"),
                   up.Move("cpu", "d", None, "1", "new")]


# ------------------------------------------------------------------ the summary


def test_the_summary_is_markdown_a_bot_can_paste(tmp_path: Path) -> None:
    result = up.Result(tmp_path / "course", moves=[
        up.Move("cpu", "platformdirs", "4.14.8", "4.14.9", "update"),
        up.Move("debian", "libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", "security")],
        built=[up.Built("cpu", "torch2.13.0-cpu-py3.11-aaaaaaaaaaaa",
                        "torch2.13.0-cpu-py3.11-bbbbbbbbbbbb", 3_270_000_000, 3_272_500_000,
                        "COPY requirements/5-rest.txt /opt/course-ops/requirements/5-rest.txt",
                        20, 40, "7 of 7 checks", True, "ctl:5000/course-ops/course:x")],
        notes=["cuda: jupyterhub held"])
    text = up.summary(result)
    assert "| cpu | platformdirs | 4.14.8 | 4.14.9 | update |" in text
    assert "| debian | libssl3 | 3.0.20-1~deb12u2 | 3.0.22-1~deb12u2 | security |" in text
    assert ("**cpu**: `torch2.13.0-cpu-py3.11-aaaaaaaaaaaa` -> "
            "`torch2.13.0-cpu-py3.11-bbbbbbbbbbbb`") in text
    assert "3,270 MB -> 3,272 MB (+2.5 MB)" in text
    assert "tests: passed (7 of 7 checks)" in text
    assert "pushed: `ctl:5000/course-ops/course:x`" in text
    assert "- cuda: jupyterhub held" in text
    result.built[0].passed = False
    result.restored = True
    assert "tests: FAILED" in up.summary(result)
    assert "put back as they were" in up.summary(result)


def test_a_failed_test_puts_the_locks_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """apply() restores every lock file when the new image fails its tests."""
    copy = tmp_path / "course"
    shutil.copytree(spec_mod.COURSE_DIR, copy, ignore=shutil.ignore_patterns("build"))
    spec = spec_mod.load(copy)
    variant = spec.variant("cpu")
    lock_file = spec.lock_path("cpu")
    before = lock_file.read_text()
    from ops.images import build as build_mod
    from ops.images import lock as lock_mod
    from ops.images import smoke

    class Prepared:
        ref, tag, base = "course-ops/course:new", "new", "b"
        variant = spec.variant("cpu")

    class Image:
        attrs = {"Size": 1}

    class Client:
        class images:  # noqa: N801
            @staticmethod
            def get(ref: str) -> Image:
                return Image()

    def prepare(*a: object, make_base: bool = True, **k: object) -> Prepared:
        if not make_base:  # before the re-lock: the old image is not on this machine
            raise OpsError("base image not here")
        return Prepared()

    monkeypatch.setattr(build_mod, "prepare", prepare)
    monkeypatch.setattr(lock_mod, "lock", lambda *a, **k: lock_file.write_text("changed\n"))
    monkeypatch.setattr(spec_mod, "parse_lock", lambda p, t=None: spec_mod.Lock(p, {}))
    monkeypatch.setattr(build_mod, "build", lambda *a, **k: build_mod.Built(Prepared()))
    monkeypatch.setattr(build_mod, "write_manifest", lambda *a, **k: None)
    monkeypatch.setattr(smoke, "host_has_gpu", lambda c: False)
    monkeypatch.setattr(smoke, "run",
                        lambda *a, **k: [smoke.Check("image tests", False, "1 failed")])
    plan = up.Plan(python={"cpu": ["platformdirs"]})
    report = _report(copy, packages=[])
    result = up.apply(Client(), spec, [variant], report, plan, cuda=None)
    assert not result.passed and result.restored
    assert lock_file.read_text() == before


# ------------------------------------------------------------------ the CLI


def test_the_exit_code_is_named_and_the_next_free_one() -> None:
    assert ExitCode.OUTDATED == 9
    assert ExitCode(9).name == "OUTDATED"
    below = sorted(int(c) for c in ExitCode if c < 100 and c != ExitCode.OUTDATED)
    assert below == list(range(0, 9))


@pytest.mark.parametrize(("outdated", "errors", "code"), [
    (True, False, ExitCode.OUTDATED),
    (False, False, ExitCode.OK),
    (False, True, ExitCode.FAILED),
    (True, True, ExitCode.OUTDATED),
])
def test_outdated_exits_by_what_it_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         outdated: bool, errors: bool, code: int) -> None:
    from ops.cli import cli
    from ops.images import commands

    report = _report(tmp_path, packages=[])
    if not outdated:
        report.variants[0].packages = [p for p in report.variants[0].packages
                                       if not p.outdated]
    if errors:
        report.variants.append(od.VariantReport("cuda", tmp_path / "cuda.txt", error="uv: no"))
    monkeypatch.setattr(commands, "_outdated_report", lambda *a, **k: report)
    result = CliRunner().invoke(cli, ["images", "outdated", "--format", "json"])
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["outdated"] is outdated
