"""The website's pure parts: the link checker, Jekyll's errors as file:line, the site
config, release names and which releases are pruned; the CLI's one-line errors."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops import REPO_ROOT, ssh
from ops.errors import InputError, OpsError, RemoteError, UsageError
from ops.inventory import load
from ops.site import builder, deploy, links, releases, source
from ops.site import settings as site_settings
from tests.unit.sites import built_pages

EXAMPLE = REPO_ROOT / "examples" / "course-site"


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT)


# ---------------------------------------------------------------- links
def test_links_that_resolve_pass(tmp_path: Path) -> None:
    out = built_pages(tmp_path, {
        "index.html": '<a href="/cs/info/">i</a><img src="/cs/a/logo.svg">'
                      '<a href="info/#x">rel</a><a href="#top">t</a>'
                      '<a href="https://d2l.ai/">ext</a><a href="mailto:a@b.c">m</a>'
                      '<img srcset="/cs/a/logo.svg 1x, a/logo.svg 2x">',
        "info/index.html": '<a href="../">up</a><a href="/cs/">home</a><a href="/cs">bare</a>'
                           '<link rel="stylesheet" href="../a/main.css?v=1">',
        "a/logo.svg": "<svg/>",
        "a/main.css": "body{}",
    })
    assert links.check(out, "/cs") == []


@pytest.mark.parametrize(("link", "reason"), [
    ("/cs/nope/", "no such page or file in the build"),
    ("/cs/a/missing.png", "no such page or file in the build"),
    ("/info/", "outside the baseurl /cs"),
    ("../../etc/passwd", "outside the baseurl /cs"),
    ("http://localhost:4000/cs/info/", "links to localhost"),
    ("https://127.0.0.1/cs/", "links to localhost"),
    ("//localhost/x", "links to localhost"),
])
def test_broken_links_name_page_and_link(tmp_path: Path, link: str, reason: str) -> None:
    out = built_pages(tmp_path, {"info/index.html": f'<p><a href="{link}">x</a></p>',
                           "index.html": "home"})
    problems = links.check(out, "/cs")
    assert [(p.page, p.link, p.reason) for p in problems] == [("info/index.html", link, reason)]


def test_page_url() -> None:
    assert links.page_url("info/index.html", "/cs") == "/cs/info/"
    assert links.page_url("index.html", "/cs") == "/cs/"
    assert links.page_url("404.html", "/cs") == "/cs/404.html"


# ---------------------------------------------------------------- Jekyll's errors
def _page(tmp_path: Path, rel: str, text: str) -> Path:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(text)
    return tmp_path


def test_liquid_error_names_file_and_line_counting_the_front_matter(tmp_path: Path) -> None:
    src = _page(tmp_path, "info.md", "---\ntitle: x\npermalink: /info/\n---\n" + "a\n" * 5)
    out = ("Configuration file: /src/_config.yml\n"
           "\x1b[31m  Liquid Exception: Liquid syntax error (line 6): Unknown tag 'bogus' in "
           "info.md\x1b[0m\n\x1b[31m  Jekyll 4.3.1   Please append `--trace`\x1b[0m\n")
    err = builder.parse_errors(out, src)
    assert isinstance(err, InputError)
    assert str(err).startswith(f"{src / 'info.md'}:10: Liquid error: Unknown tag 'bogus'")


def test_liquid_error_in_an_include_names_the_include_and_its_own_line(tmp_path: Path) -> None:
    # Jekyll 4's words: the template and its line in the parentheses, the page after
    # "included in"; an include has no front matter, so no offset (the page's would be 4)
    src = _page(tmp_path, "info.md", "---\ntitle: x\npermalink: /info/\n---\n{% include "
                "course_staff.html %}\n")
    _page(tmp_path, "_includes/course_staff.html", "<ul>\n<li>\n{% bogus %}\n</ul>\n")
    out = ("\x1b[31m  Liquid Exception: Liquid syntax error (/src/_includes/course_staff.html "
           "line 3): Unknown tag 'bogus' included in info.md\x1b[0m\n"
           "             Error: Liquid syntax error (/src/_includes/course_staff.html line 3): "
           "Unknown tag 'bogus'\n")
    err = builder.parse_errors(out, src)
    assert isinstance(err, InputError)
    assert (err.path, err.line) == (str(src / "_includes/course_staff.html"), 3)
    assert str(err).startswith(f"{src / '_includes/course_staff.html'}:3: Liquid error: "
                               "Unknown tag 'bogus'; ")


def test_liquid_error_in_a_layout_counts_its_front_matter(tmp_path: Path) -> None:
    src = _page(tmp_path, "_layouts/page.html", "---\nlayout: default\n---\n<h1>\n{% x %}\n")
    out = ("Liquid Exception: Liquid syntax error (/src/_layouts/page.html line 2): Unknown "
           "tag 'x' included in info.md\n")
    err = builder.parse_errors(out, src)
    assert isinstance(err, InputError)
    assert (err.path, err.line) == (str(src / "_layouts/page.html"), 5)


def test_front_matter_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    out = ("      Generating...\n"
           "\x1b[31m             Error: YAML Exception reading /src/_lectures/l2.md: "
           "(<unknown>): found unexpected end of stream while scanning a quoted scalar at "
           "line 2 column 8\x1b[0m\n                    done in 0.3 seconds.\n")
    err = builder.parse_errors(out, tmp_path)
    assert isinstance(err, InputError)
    assert str(err).startswith(f"{tmp_path / '_lectures/l2.md'}:2: front matter is not valid "
                               "YAML: found unexpected end of stream")


def test_config_yaml_error_names_config_and_line(tmp_path: Path) -> None:
    out = ("/usr/lib/ruby/3.1.0/psych.rb:455:in `parse': (<unknown>): did not find expected "
           "node content while parsing a flow node at line 39 column 1 (Psych::SyntaxError)\n"
           "\tfrom /usr/share/.../jekyll/configuration.rb:200:in `read_config_files'\n")
    err = builder.parse_errors(out, tmp_path)
    assert isinstance(err, InputError)
    assert (err.path, err.line) == (str(tmp_path / "_config.yml"), 39)


def test_clean_output_is_no_error(tmp_path: Path) -> None:
    assert builder.parse_errors("Generating...\n done in 0.6 seconds.\n", tmp_path) is None


def test_front_matter_lines(tmp_path: Path) -> None:
    p = tmp_path / "a.md"
    p.write_text("---\na: 1\n---\nbody\n")
    assert builder.front_matter_lines(p) == 3
    p.write_text("no front matter\n")
    assert builder.front_matter_lines(p) == 0


def test_builder_tag_follows_the_dockerfile_and_the_ca_bundle() -> None:
    a = builder.image_tag("course-ops/lab-base:bookworm-1")
    assert a == builder.image_tag("course-ops/lab-base:bookworm-1")
    assert a != builder.image_tag("course-ops/lab-base:bookworm-2")
    assert a != builder.image_tag("course-ops/lab-base:bookworm-1", b"PEM")
    text = builder.render_dockerfile("base:1")
    assert text.splitlines()[3] == "FROM base:1" and "jekyll" in text
    assert "ca-bundle.crt" in builder.render_dockerfile("base:1", ca_bundle=True)


def test_jekyll_argv_reads_only_src_and_skips_the_disk_cache() -> None:
    argv = builder.jekyll_argv("/cs/semesters/w1")
    assert argv[:5] == ["build", "--source", "/src", "--destination", "/out"]
    assert "--disable-disk-cache" in argv and argv[-2:] == ["--baseurl", "/cs/semesters/w1"]


# ---------------------------------------------------------------- the site source
def test_example_site_config() -> None:
    cfg = source.load(EXAMPLE)
    assert cfg.baseurl == "/cs236781"
    assert cfg.title == "Deep Learning on Computational Accelerators"
    assert len(cfg.staff) >= 2


@pytest.mark.parametrize(("value", "message"), [
    ('"cs236781"', "does not start with a slash"),
    ('"/cs236781/"', "ends with a slash"),
    ('""', "must be a path"),
    ('"//evil.example"', "does not start with a slash"),
    ('"/a b"', "not a plain URL path"),
])
def test_bad_baseurl_names_the_line(tmp_path: Path, value: str, message: str) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "s")
    cfg = tmp_path / "s" / "_config.yml"
    text = cfg.read_text().replace('baseurl: "/cs236781"', f"baseurl: {value}")
    cfg.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("baseurl:"))
    with pytest.raises(InputError) as e:
        source.load(tmp_path / "s")
    assert (e.value.path, e.value.line) == (str(cfg), line)
    assert message in str(e.value)


def test_config_yaml_error_before_jekyll(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text("title: x\nbaseurl: [\n")
    with pytest.raises(InputError) as e:
        source.load(tmp_path)
    assert e.value.line == 3 and "not valid YAML" in str(e.value)


@pytest.mark.parametrize(("text", "names"), [
    ("- name: A\n- role: TA\n- name: B\n", ["A", "B"]),  # a list of people
    # a mapping of people (Minimal Mistakes): the key when there is no name
    ("chaim:\n  name: Chaim B\n  bio: x\nnoa:\n  bio: y\n", ["Chaim B", "noa"]),
    ("title: Staff\n", []),  # another shape: the site's business, nobody named
    ("", []),
])
def test_staff_from_a_list_or_a_mapping(tmp_path: Path, text: str, names: list[str]) -> None:
    (tmp_path / "_data").mkdir()
    (tmp_path / "_data" / "authors.yml").write_text(text)
    assert source.staff_names(tmp_path) == names


# ---------------------------------------------------------------- releases
def test_release_name_from_git_time_and_state(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 26, 9, 5, 7, tzinfo=dt.UTC)
    assert releases.release_name(tmp_path, when, "0a1b") == "20261126T090507Z-nogit-0a1b"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.md").write_text("a")
    subprocess.run([*git, "add", "a.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    sha = subprocess.run([*git, "rev-parse", "--short=7", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert releases.release_name(tmp_path, when, "0a1b") == f"20261126T090507Z-{sha}-0a1b"
    (tmp_path / "a.md").write_text("b")
    name = releases.release_name(tmp_path, when, "0a1b")
    assert name == f"20261126T090507Z-{sha}-dirty-0a1b"
    assert releases.RELEASE_RE.match(name)


def test_two_releases_of_one_commit_in_one_second_differ(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 26, 9, 5, 7, tzinfo=dt.UTC)
    names = {releases.release_name(tmp_path, when) for _ in range(20)}
    assert len(names) > 1
    assert all(releases.RELEASE_RE.match(n) for n in names)
    assert releases.RELEASE_RE.match("20261126T090507Z-abc1234")  # made before the suffix


def test_content_hash_ignores_the_marker_and_sees_every_byte(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text("x")
    h = releases.content_hash(tmp_path)
    (tmp_path / releases.MARKER).write_text("name=1\n")
    (tmp_path / releases.BUILD_MARKER).write_text("x\n")
    assert releases.content_hash(tmp_path) == h
    (tmp_path / "a" / "index.html").chmod(0o755)
    assert releases.content_hash(tmp_path) == h  # modes are not hashed (as documented)
    (tmp_path / "a" / "index.html").write_text("y")
    assert releases.content_hash(tmp_path) != h


R = [f"2026010{i}T000000Z-abc1234" for i in range(1, 8)]  # oldest first


def test_prune_keeps_the_newest() -> None:
    assert releases.to_prune(R, 5, R[-1], R[-2]) == R[:2]
    assert releases.to_prune(R[:3], 5, R[2], R[1]) == []


def test_prune_never_removes_current_or_previous_and_keeps_exactly_keep() -> None:
    # after a rollback current is old; a new deploy makes the old current "previous"
    assert releases.to_prune(R, 3, R[-1], R[0]) == R[1:5]  # keeps R[0], R[5], R[6]
    for keep in range(2, 8):
        for cur in R:
            for prev in R:
                pruned = releases.to_prune(R, keep, cur, prev)
                kept = [r for r in R if r not in pruned]
                assert cur in kept and prev in kept
                assert len(kept) == keep, (keep, cur, prev)


def test_prune_with_both_links_old_keeps_them_and_the_newest_others() -> None:
    assert releases.to_prune(R, 4, R[1], R[0]) == R[2:5]  # keeps R[0], R[1], R[5], R[6]
    assert releases.to_prune(R, 2, R[2], R[4]) == [R[0], R[1], R[3], R[5], R[6]]


def test_prune_removes_nothing_while_fewer_than_keep() -> None:
    # keep 5 of 4: nothing goes (a negative slice once pruned the oldest)
    assert releases.to_prune(R[:4], 5, R[3], R[2]) == []
    assert releases.to_prune(R[:5], 5, R[4], R[3]) == []


def test_prune_ignores_foreign_names_and_refuses_keep_below_two() -> None:
    assert releases.to_prune([*R, "backup", ".x.partial"], 6, R[-1], R[-2]) == R[:1]
    with pytest.raises(ValueError):
        releases.to_prune(R, 1, R[-1], R[-2])


def test_prune_without_previous_link_protects_current_only() -> None:
    assert releases.to_prune(R, 2, R[0], None) == R[1:6]


def _hs(current: str | None, previous: str | None) -> deploy.HostState:
    return deploy.HostState(current, None, R, previous)


def test_rollback_goes_to_previous_not_to_the_name_before() -> None:
    from ops.site import rollback_plan

    # deployed R[6] after a rollback to R[2]: previous is R[2], not R[5]
    assert rollback_plan({"w1": _hs(R[6], R[2])}) == {"w1": R[2]}
    # rolled back from R[6] to R[2]: previous is now R[6] (a second rollback undoes it)
    assert rollback_plan({"w1": _hs(R[2], R[6])}) == {"w1": R[6]}


@pytest.mark.parametrize("previous", [None, R[3], "20990101T000000Z-gone"])
def test_rollback_without_a_usable_previous_touches_no_host(previous: str | None) -> None:
    from ops.site import rollback_plan

    with pytest.raises(OpsError) as e:
        rollback_plan({"w1": _hs(R[6], R[5]), "w2": _hs(R[3], previous)})
    assert str(e.value).startswith("w2: no previous release to roll back to")


# ---------------------------------------------------------------- deploy plumbing
def test_rsync_argv_links_to_the_live_release_holds_the_lock_and_uses_sudo() -> None:
    from ops.inventory import Host

    h = Host("web1", ["all", "web"], {"ansible_host": "10.0.0.5", "ansible_port": 2222,
                                       "ansible_user": "admin",
                                       "ansible_ssh_private_key_file": "/k"})
    argv = deploy.rsync_argv(h, "/srv/w", Path("/tmp/out"), "/srv/w/releases/.r.partial",
                             ["/srv/w/releases/r0"])
    assert argv[0] == "rsync" and "--checksum" in argv and "--link-dest=/srv/w/releases/r0" \
        in argv
    assert "--chmod=D0755,F0644" in argv and "--delete" in argv and "--stats" in argv
    assert f"--exclude=/{releases.BUILD_MARKER}" in argv
    # the run's ssh_config names the host; its block has the address, port, user and key
    e = shlex.split(argv[argv.index("-e") + 1])
    assert e[:2] == ["ssh", "-F"] and e[3:] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    block = Path(e[2]).read_text().split("Host web1\n", 1)[1].split("Host ", 1)[0]
    assert block.split() == ["HostName", "10.0.0.5", "Port", "2222", "User", "admin",
                             "IdentityFile", "/k"]
    assert argv[argv.index("--rsync-path") + 1] == \
        f"sudo -n flock -E {deploy.EXIT_LOCKED} -w 60 /srv/w/.lock rsync"
    assert argv[-2:] == ["/tmp/out/", "web1:/srv/w/releases/.r.partial/"]
    root = Host("web2", ["all", "web"], {"ansible_host": "::1"})
    argv = deploy.rsync_argv(root, "/srv/w", Path("/o"), "/srv/w/x", [])
    assert argv[argv.index("--rsync-path") + 1].startswith("flock ")
    assert argv[-1] == "web2:/srv/w/x/" and not any("link-dest" in a for a in argv)


def test_rsync_stats_are_parsed() -> None:
    out = ("Number of files: 3,012 (reg: 2,950, dir: 62)\n"
           "Number of regular files transferred: 2\n"
           "Total file size: 314,572,800 bytes\n"
           "Total bytes sent: 231,404\n")
    assert deploy.parse_stats(out) == deploy.Sent(231404, 2, 2950, 314572800)


# ---------------------------------------------------------------- inventory settings
def _inventory(tmp_path: Path, extra: str) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    web:\n      hosts:\n"
                                   "        w1: {ansible_host: 127.0.0.1}\n")
    (inv / "group_vars" / "all.yml").write_text(
        f"course_code: x\nwebsite_source: {EXAMPLE}\n{extra}")
    return inv


@pytest.mark.parametrize(("extra", "line", "message"), [
    ("website_keep_releases: 1\n", 3, "website_keep_releases 1 must be a whole number"),
    ("website_keep_releases: many\n", 3, "must be a whole number"),
    ("website_root: srv\n", 3, "website_root 'srv' must be an absolute directory"),
    ("website_baseurl: cs\n", 3, "does not start with a slash"),
])
def test_bad_website_vars_name_the_line(tmp_path: Path, extra: str, line: int,
                                        message: str) -> None:
    inv = _inventory(tmp_path, extra)
    with pytest.raises(InputError) as e:
        site_settings(load(inv))
    assert (e.value.path, e.value.line) == (str(inv / "group_vars" / "all.yml"), line)
    assert message in str(e.value)


def test_settings_from_role_defaults(tmp_path: Path) -> None:
    s = site_settings(load(_inventory(tmp_path, "")))
    assert (s.root, s.keep, s.baseurl) == ("/srv/course-website", 5, "/cs236781")
    assert [h.name for h in s.hosts] == ["w1"]


def test_cli_bad_keep_is_a_usage_error_and_touches_no_host(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, "")
    p = ops("-i", str(inv), "site", "deploy", "--keep", "1")
    assert p.returncode == 2
    assert p.stderr.strip() == ("ops: error: --keep 1: keep at least 2 releases; the current "
                                "one and the one a rollback goes back to")


def test_cli_differing_baseurl_is_one_line_with_both_places(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, "website_baseurl: /other\n")
    p = ops("-i", str(inv), "site", "deploy")
    assert p.returncode == 3
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"ops: error: {EXAMPLE / '_config.yml'}:")
    assert "differs from website_baseurl '/other'" in lines[0]
    assert "Traceback" not in p.stderr


def test_cli_bad_semester_is_a_usage_error(tmp_path: Path) -> None:
    p = ops("-i", str(_inventory(tmp_path, "")), "site", "archive", "../w1")
    assert p.returncode == 2 and "is not a plain name" in p.stderr


def test_cli_build_of_a_missing_source(tmp_path: Path) -> None:
    p = ops("site", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert p.returncode == 3 and "no such site directory" in p.stderr
    assert not (tmp_path / "o").exists()


def test_opserror_for_broken_links_names_page_and_link() -> None:
    p = links.LinkProblem("info/index.html", "/cs/nope/", "no such page or file in the build")
    assert str(p) == "info/index.html: /cs/nope/ (no such page or file in the build)"
    assert issubclass(InputError, OpsError)


def test_a_data_file_yaml_error_names_that_file(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "s")
    data = tmp_path / "s" / "_data" / "schedule.yml"
    n = len(data.read_text().splitlines())
    data.write_text(data.read_text() + "- week: [8\n  date: x\n")
    with pytest.raises(InputError) as e:
        source.load(tmp_path / "s")
    assert (e.value.path, e.value.line) == (str(data), n + 2)  # where PyYAML sees it


def test_a_psych_error_outside_the_config_does_not_blame_the_config(tmp_path: Path) -> None:
    out = "/usr/lib/ruby/3.1.0/psych.rb:455:in `parse': (<unknown>): did not find expected " \
          "',' or ']' while parsing a flow sequence at line 6 column 12 (Psych::SyntaxError)\n"
    err = builder.parse_errors(out, tmp_path)
    assert err is not None and not isinstance(err, InputError)
    assert "at line 6" in str(err) and "_config.yml" not in str(err)


def test_provision_checks_the_website_inputs_before_any_host(tmp_path: Path) -> None:
    from ops.site import provision_wanted

    assert provision_wanted(load(_inventory(tmp_path / "a", ""))) is True
    with pytest.raises(InputError):
        provision_wanted(load(_inventory(tmp_path / "b", "website_keep_releases: 0\n")))
    with pytest.raises(InputError):
        provision_wanted(load(_inventory(tmp_path / "c", "website_baseurl: /elsewhere\n")))
    inv = _inventory(tmp_path / "d", "")
    (inv / "group_vars" / "all.yml").write_text("course_code: x\n")
    assert provision_wanted(load(inv)) is False


# ---------------------------------------------------------------- --out is checked first
@pytest.mark.parametrize("where", ["source", "inside", "parent", "checkout", "root", "home"])
def test_out_that_would_remove_something_else_is_refused(tmp_path: Path, where: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "site"
    shutil.copytree(EXAMPLE, src)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = {"source": src, "inside": src / "_site", "parent": tmp_path, "checkout": REPO_ROOT,
           "root": Path("/"), "home": tmp_path / "home"}[where]
    with pytest.raises(UsageError) as e:
        builder.prepare_out(src, out)
    assert str(e.value).startswith(f"--out {out.resolve()}: ")
    assert "nothing was removed" in str(e.value) and "\n" not in str(e.value)
    assert (src / "_config.yml").is_file()


def test_out_not_empty_and_not_made_by_a_build_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError) as e:
        builder.prepare_out(EXAMPLE, out)
    assert "no .course-ops-build in it" in str(e.value)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_out_new_empty_or_marked_is_emptied_and_marked(tmp_path: Path) -> None:
    new = builder.prepare_out(EXAMPLE, tmp_path / "a" / "new")
    assert sorted(p.name for p in new.iterdir()) == [releases.BUILD_MARKER]
    (new / "old.html").write_text("stale")
    again = builder.prepare_out(EXAMPLE, new)  # an earlier build's: emptied
    assert sorted(p.name for p in again.iterdir()) == [releases.BUILD_MARKER]
    (tmp_path / "empty").mkdir()
    assert builder.prepare_out(EXAMPLE, tmp_path / "empty").is_dir()


def test_the_build_marker_is_not_uploaded(local_host, tmp_path: Path) -> None:  # noqa: ANN001
    host, root = local_host
    out = tmp_path / "build"
    out.mkdir()
    (out / releases.BUILD_MARKER).write_text("x")
    (out / "index.html").write_text("hi")
    deploy.upload(host, str(root), R[0], out, None, [])
    assert sorted(p.name for p in (root / "current").iterdir()) == ["index.html"]


def test_cli_build_into_the_source_is_one_line_and_removes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "s"
    shutil.copytree(EXAMPLE, src)
    p = ops("site", "build", str(src), "--out", str(src))
    assert p.returncode == 2
    assert p.stderr.strip() == (f"ops: error: --out {src}: is or holds the site source {src}; "
                                "nothing was removed; pass --out a new directory, or one an "
                                "earlier `ops site build` made")
    assert (src / "_config.yml").is_file()


# ---------------------------------------------------------------- the host scripts, run here
@pytest.fixture
def local_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """The deploy scripts run by sh on this machine instead of over ssh; root is made as
    role website makes it."""
    from ops.inventory import Host

    root = tmp_path / "www"
    for d in ("releases", "semesters"):
        (root / d).mkdir(parents=True)

    def local_argv(host: ssh.Access, script: str, *args: str) -> list[str]:
        return ["sh", "-c", script.replace("flock -w 60", "flock -w 1"), "sh", *args]

    remote_rsync = deploy.rsync_argv

    def local_rsync(host: Host, root: str, src: Path, dest: str, link_dests: list[str]
                    ) -> list[str]:
        argv = remote_rsync(host, root, src, dest, link_dests)
        e = argv.index("-e")  # the same flags, to a local directory, under the lock
        return ["flock", "-E", str(deploy.EXIT_LOCKED), "-w", "1", f"{root}/.lock",
                *argv[:e], f"{src}/", f"{dest}/"]

    monkeypatch.setattr(ssh, "argv", local_argv)
    monkeypatch.setattr(deploy, "rsync_argv", local_rsync)
    return Host("w1", ["all", "web"], {"ansible_host": "127.0.0.1"}), root


def _built(tmp_path: Path, text: str, files: dict[str, bytes] | None = None) -> Path:
    d = tmp_path / f"build-{text}"
    d.mkdir(exist_ok=True)
    (d / "index.html").write_text(text)
    for rel, data in (files or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def _deploy(host, root: Path, name: str, tmp_path: Path, keep: int = 5) -> list[str]:  # noqa: ANN001
    st = deploy.state(host, str(root))
    prune = releases.to_prune([*st.releases, name], keep, name, st.current)
    return deploy.upload(host, str(root), name, _built(tmp_path, name), st.current, prune)[0]


def test_deploy_sets_previous_and_rollback_swaps(local_host, tmp_path: Path) -> None:  # noqa: ANN001
    host, root = local_host
    for name in R[:3]:
        _deploy(host, root, name, tmp_path)
    st = deploy.state(host, str(root))
    assert (st.current, st.previous, st.releases) == (R[2], R[1], R[:3])
    assert (root / "current" / "index.html").read_text() == R[2]
    assert deploy.rollback(host, str(root), R[2]) == R[1]
    st = deploy.state(host, str(root))
    assert (st.current, st.previous) == (R[1], R[2])
    # a deploy after the rollback: previous is what was live (R[1]), whatever the names say
    _deploy(host, root, R[3], tmp_path)
    st = deploy.state(host, str(root))
    assert (st.current, st.previous) == (R[3], R[1])
    assert deploy.rollback(host, str(root), R[3]) == R[1]


def test_a_release_sends_what_changed_and_hard_links_the_rest(local_host,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    import time

    host, root = local_host
    big = os.urandom(2_000_000)
    one = _built(tmp_path, "one", {"assets/big.pdf": big, "a/page.html": b"old"})
    _, sent = deploy.upload(host, str(root), R[0], one, None, [])
    assert sent.bytes > len(big)  # the first release is sent whole
    time.sleep(1.1)  # a new build writes every file again: other mtimes, same bytes
    two = _built(tmp_path, "two", {"assets/big.pdf": big, "a/page.html": b"new"})
    os.utime(two / "assets" / "big.pdf")
    _, sent = deploy.upload(host, str(root), R[1], two, R[0], [])
    assert sent.files == 2 and sent.bytes < 50_000  # index.html and a/page.html only
    old, new = root / "releases" / R[0], root / "releases" / R[1]
    assert (new / "assets/big.pdf").stat().st_ino == (old / "assets/big.pdf").stat().st_ino
    assert (new / "a/page.html").read_bytes() == b"new"
    assert (old / "a/page.html").read_bytes() == b"old"  # the live release is never touched
    assert (new / "a/page.html").stat().st_mode & 0o777 == 0o644
    assert (new / "a").stat().st_mode & 0o777 == 0o755 and new.stat().st_mode & 0o777 == 0o755


def test_an_upload_whose_current_moved_is_removed(local_host, tmp_path: Path) -> None:  # noqa: ANN001
    host, root = local_host
    _deploy(host, root, R[0], tmp_path)
    _deploy(host, root, R[1], tmp_path)
    with pytest.raises(RemoteError):
        deploy.upload(host, str(root), R[2], _built(tmp_path, "x"), R[0], [])
    assert sorted(p.name for p in (root / "releases").iterdir()) == R[:2]


def test_prune_on_the_host_keeps_current_previous_and_the_newest(local_host,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    host, root = local_host
    for name in R[:4]:
        _deploy(host, root, name, tmp_path, keep=3)
    deploy.rollback(host, str(root), R[3])  # current R[2], previous R[3]
    deploy.rollback(host, str(root), R[2])  # current R[3], previous R[2]
    _deploy(host, root, R[4], tmp_path, keep=3)
    pruned = _deploy(host, root, R[5], tmp_path, keep=3)
    assert pruned == [R[2]]
    st = deploy.state(host, str(root))
    assert st.releases == R[3:6] and (st.current, st.previous) == (R[5], R[4])


def test_a_switch_by_someone_else_meanwhile_stops_the_deploy(local_host,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    host, root = local_host
    _deploy(host, root, R[0], tmp_path)
    _deploy(host, root, R[1], tmp_path)
    with pytest.raises(RemoteError) as e:
        deploy.upload(host, str(root), R[2], _built(tmp_path, "x"), R[0], [])
    assert "w1: uploading release" in str(e.value) and "not " + R[0] in str(e.value)
    assert not (root / "releases" / R[2]).exists()
    with pytest.raises(RemoteError):
        deploy.rollback(host, str(root), R[0])
    assert deploy.state(host, str(root)).current == R[1]


def test_a_held_lock_is_another_deploy_running(local_host, tmp_path: Path) -> None:  # noqa: ANN001
    host, root = local_host
    (root / ".lock").touch()
    holder = subprocess.Popen(["flock", str(root / ".lock"), "sleep", "10"])
    try:
        for _ in range(50):  # until the holder has it
            if subprocess.run(["flock", "-n", str(root / ".lock"), "true"]).returncode:
                break
            import time
            time.sleep(0.05)
        with pytest.raises(RemoteError) as e:
            deploy.state(host, str(root))
        assert e.value.message == "another deploy is running on w1"
        with pytest.raises(RemoteError):
            deploy.upload(host, str(root), R[0], _built(tmp_path, "x"), None, [])
        assert list((root / "releases").iterdir()) == []
    finally:
        holder.kill()
        holder.wait()


def test_stale_partials_go_under_the_lock_fresh_ones_stay(local_host) -> None:  # noqa: ANN001
    import os
    import time

    host, root = local_host
    stale, fresh = root / "releases" / ".old.partial", root / "releases" / ".new.partial"
    stale.mkdir()
    fresh.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    deploy.state(host, str(root))
    assert not stale.exists() and fresh.exists()


def test_archive_refuses_to_replace_unless_forced_and_keeps_the_old(local_host,  # noqa: ANN001
                                                                   tmp_path: Path) -> None:
    host, root = local_host
    sem = root / "semesters"
    deploy.archive(host, str(root), "2026", "aaaa", _built(tmp_path, "one"))
    deploy.archive(host, str(root), "2026-winter", "aaaa", _built(tmp_path, "other"))
    assert (sem / "2026" / "index.html").read_text() == "one"
    first = os.readlink(sem / "2026")
    with pytest.raises(OpsError) as e:
        deploy.archive(host, str(root), "2026", "aaaa", _built(tmp_path, "two"))
    assert "archived already" in str(e.value) and "--force" in str(e.value)
    said, _ = deploy.archive(host, str(root), "2026", "aaaa", _built(tmp_path, "three"),
                             force=True)  # the same tag again: a new directory all the same
    assert (sem / "2026" / "index.html").read_text() == "three"
    assert said == [f"kept={first}"] and (sem / first / "index.html").read_text() == "one"
    second = os.readlink(sem / "2026")
    deploy.archive(host, str(root), "2026", "bbbb", _built(tmp_path, "four"), force=True)
    names = sorted(p.name for p in sem.iterdir())
    assert first not in names and second in names  # only the one just replaced is kept
    assert (sem / "2026-winter" / "index.html").read_text() == "other"  # another id untouched
    assert deploy.state(host, str(root)).semesters == ["2026", "2026-winter"]
    assert not [p for p in sem.iterdir() if p.name.endswith(".partial")]


# ---------------------------------------------------------------- links: own host, archives, CSS
@pytest.mark.parametrize(("link", "reason"), [
    ("https://course.example/cs/nope/", "no such page or file in the build"),
    ("https://COURSE.example./cs/info/", None),
    ("//course.example/cs/a/logo.svg", None),
    ("https://course.example/other/", "outside the baseurl /cs"),
    ("https://elsewhere.example/nope/", None),  # external: not fetched
    ("/cs/semesters/2025-winter/info/", None),  # archives live on the host
    ("/cs/semesters/.2025~abc.x/", "a dot path (the web server answers 404)"),
    ("/cs/.course-ops-build", "a dot path (the web server answers 404)"),
    ("/cs/.git/config", "a dot path (the web server answers 404)"),
    ("http://localhost./cs/", "links to localhost"),
    ("http://127.1.2.3/cs/", "links to localhost"),
    ("http://[::ffff:127.0.0.1]/", "links to localhost"),
    ("http://0.0.0.0:4000/", "links to localhost"),
    ("http://dev.localhost/", "links to localhost"),
    ("http://localhost.example/", None),
])
def test_links_to_the_own_host_archives_dot_paths_and_loopback(tmp_path: Path, link: str,
                                                              reason: str | None) -> None:
    out = built_pages(tmp_path, {"index.html": f'<a href="{link}">x</a>', "info/index.html": "i",
                           "a/logo.svg": "<svg/>", ".course-ops-build": "x"})
    problems = links.check(out, "/cs", own_hosts=["course.example"])
    assert [p.reason for p in problems] == ([reason] if reason else [])


def test_stylesheets_are_checked(tmp_path: Path) -> None:
    out = built_pages(tmp_path, {
        "index.html": "home",
        "assets/css/main.css": '/* url(gone.png) in a comment */ @import "base.css";\n'
                               "h1{background:url( ../img/bg.png )} b{background:url('x.png')}"
                               ' i{src:url("/cs/assets/fonts/f.woff2") format("woff2")}'
                               " s{background:url(data:image/png;base64,AAA=)}",
        "assets/css/base.css": "@import url(missing.css);",
        "assets/img/bg.png": "png",
        "assets/fonts/f.woff2": "font",
    })
    problems = [(p.page, p.link) for p in links.check(out, "/cs")]
    assert problems == [("assets/css/base.css", "missing.css"),
                        ("assets/css/main.css", "x.png")]


def test_css_links() -> None:
    assert links.css_links("a{b:url(x)}@import 'y.css';/* url(z) */") == ["x", "y.css"]


@pytest.mark.parametrize("value", ['"/cs;evil"', '"/cs/{x}"', '"/cs/.hidden"', '"/cs/.."',
                                   '"/cs//x"'])
def test_baseurl_must_be_plain_segments(tmp_path: Path, value: str) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "s")
    cfg = tmp_path / "s" / "_config.yml"
    cfg.write_text(cfg.read_text().replace('baseurl: "/cs236781"', f"baseurl: {value}"))
    with pytest.raises(InputError) as e:
        source.load(tmp_path / "s")
    assert "is not a plain URL path" in str(e.value)


@pytest.mark.parametrize("value", ['"/srv/my site"', "/srv/site;", '"/srv/{a}"'])
def test_website_root_nginx_cannot_take_is_refused(tmp_path: Path, value: str) -> None:
    inv = _inventory(tmp_path, f"website_root: {value}\n")
    with pytest.raises(InputError) as e:
        site_settings(load(inv))
    assert e.value.line == 3 and "has a space, ';'" in str(e.value)


def test_hostnames_are_the_web_hosts_names_by_default(tmp_path: Path) -> None:
    assert site_settings(load(_inventory(tmp_path / "a", ""))).hostnames == ["w1"]
    s = site_settings(load(_inventory(tmp_path / "b", "website_hostname: course.example\n")))
    assert s.hostnames == ["course.example"]


def test_site_url_host_is_internal(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "s")
    cfg = tmp_path / "s" / "_config.yml"
    cfg.write_text(cfg.read_text().replace('url: ""', 'url: "https://Course.Example."'))
    assert source.load(tmp_path / "s").url_host == "course.example"


def test_a_prebuilt_site_of_another_source_is_refused_before_any_host(tmp_path: Path) -> None:
    from ops.site import Built, deploy_site

    inv = _inventory(tmp_path, "")
    other = source.SiteConfig(tmp_path, "t", "/cs236781", [])
    with pytest.raises(UsageError) as e:
        deploy_site(load(inv), prebuilt=Built(tmp_path / "o", other, "/cs236781", "h", 0.0))
    assert "the prebuilt site is of" in str(e.value)


# ---------------------------------------------------------------- role website's nginx template
def _cache_map() -> list[tuple[str, str]]:
    import re

    import jinja2

    text = (REPO_ROOT / "roles/website/templates/course-website.conf.j2").read_text()
    conf = jinja2.Template(text).render(ansible_managed="x", website_asset_max_age=604800,
                                        website_default_server=True, website_hostname="h",
                                        website_tls_certificate="c", website_tls_protocols="p",
                                        website_tls_certificate_key="k", website_gzip=True,
                                        website_baseurl="/cs", website_root="/srv/w")
    block = conf.split("map $uri $course_website_cache {", 1)[1].split("}", 1)[0]
    return re.findall(r'^\s*"?([^"\s]+)"?\s+"([^"]+)";', block, re.M)


@pytest.mark.parametrize(("uri", "cache"), [
    ("/cs/info/", "no-cache"),
    ("/cs/assets/css/main.css", "no-cache"),  # not fingerprinted: revalidated
    ("/cs/assets/js/app.js", "no-cache"),
    ("/cs/slides/l1.PDF", "no-cache"),
    ("/cs/assets/img/logo.svg", "public, max-age=604800"),
    ("/cs/assets/img/a.JPG", "public, max-age=604800"),
    ("/cs/assets/fonts/f.woff2", "public, max-age=604800"),
])
def test_nginx_caches_only_images_and_fonts(uri: str, cache: str) -> None:
    import re

    entries = _cache_map()
    got = dict(entries)["default"]
    for pattern, value in entries:
        if pattern.startswith("~*") and re.search(pattern[2:], uri, re.I):
            got = value
    assert got == cache


# ---------------------------------------------------------------- provision builds first
@pytest.fixture
def provision_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """`ops provision` with every host-touching step replaced by a recorder."""
    import types

    import ops.accounts
    import ops.cli  # noqa: F401  (before ops.images.commands: the CLI imports it last)
    from ops import machines
    from ops import site as site_mod
    from ops.accounts import sync as sync_mod
    from ops.images import commands as image_commands

    calls: list[str] = []
    stub = types.ModuleType("ops.accounts.remote")  # pyinfra's gevent patching stays out
    monkeypatch.setitem(sys.modules, "ops.accounts.remote", stub)
    monkeypatch.setattr(ops.accounts, "remote", stub, raising=False)
    monkeypatch.setattr(sync_mod, "load_context", lambda *a: object())
    monkeypatch.setattr(sync_mod, "guard_leavers", lambda *a: [])
    monkeypatch.setattr(sync_mod, "sync", lambda *a, **k: calls.append("accounts") or {})
    monkeypatch.setattr(site_mod, "provision_wanted", lambda inv: True)
    monkeypatch.setattr(image_commands, "image_extra_vars", lambda inv: ())

    def run_playbook(argv: list[str], **k: object) -> tuple[int, dict[str, object]]:
        calls.append("machines")
        return 0, {}

    def deploy_site(inv: object, **k: object) -> None:
        prebuilt = k.get("prebuilt")
        assert isinstance(prebuilt, site_mod.Built) and prebuilt.out.is_dir()
        calls.append("deploy of the prebuilt site")
        raise OpsError("stop here")  # the verify phase is not under test

    monkeypatch.setattr(machines, "run_playbook", run_playbook)
    monkeypatch.setattr(site_mod, "deploy_site", deploy_site)
    return calls


def _provision(tmp_path: Path) -> int:
    from ops.cli import cli

    inv = _inventory(tmp_path, "")
    try:
        cli.main(["-i", str(inv), "-y", "provision"], standalone_mode=False)
    except OpsError as exc:
        return int(exc.code)
    return 0


def test_provision_builds_the_site_before_any_host(provision_calls: list[str],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ops import site as site_mod

    def prebuild(inv: object, out: Path, **k: object) -> site_mod.Built:
        provision_calls.append("build")
        out.mkdir(parents=True)
        return site_mod.Built(out, source.load(EXAMPLE), "/cs236781", "h", 0.0)

    monkeypatch.setattr(site_mod, "prebuild", prebuild)
    assert _provision(tmp_path) == 1
    assert provision_calls == ["build", "machines", "deploy of the prebuilt site"]


def test_provision_with_a_broken_site_touches_no_host(provision_calls: list[str],
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ops import site as site_mod

    def prebuild(inv: object, out: Path, **k: object) -> site_mod.Built:
        raise InputError(EXAMPLE / "info.md", 10, "Liquid error: Unknown tag 'bogus'")

    monkeypatch.setattr(site_mod, "prebuild", prebuild)
    assert _provision(tmp_path) == 3
    assert provision_calls == []


def test_nginx_sends_a_semester_to_its_archive_or_the_release() -> None:
    import re

    import jinja2

    text = (REPO_ROOT / "roles/website/templates/course-website.conf.j2").read_text()
    conf = jinja2.Template(text).render(ansible_managed="x", website_asset_max_age=1,
                                        website_default_server=True, website_hostname="h",
                                        website_tls_certificate="c", website_tls_protocols="p",
                                        website_tls_certificate_key="k", website_gzip=True,
                                        website_baseurl="/cs.1", website_root="/srv/w")
    block = conf.split("location ^~ /cs.1/semesters/ {", 1)[1]
    assert block.split("\n", 3)[2].strip() == "alias /srv/w/current/semesters/;"
    pattern = re.search(r"location ~ (\^\S+) \{", block)
    assert pattern is not None
    rx = re.compile(pattern[1].replace("(?<", "(?P<"))  # PCRE's named groups, in Python's
    m = rx.match("/cs.1/semesters/2024-winter/lectures/l1/")
    assert m and (m["course_website_semester"], m["course_website_rest"]) == \
        ("2024-winter", "/lectures/l1/")
    assert rx.match("/csx1/semesters/2024/") is None  # the baseurl's dot is literal
    assert "if (-d /srv/w/semesters/$course_website_semester)" in block
    assert block.index("location ~ /\\.") < block.index("location ~ ^")  # dot paths first
