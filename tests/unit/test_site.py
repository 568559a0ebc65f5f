"""The website's pure parts: the link checker, Jekyll's errors as file:line, the site
config, release names and which releases are pruned; the CLI's one-line errors."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops import REPO_ROOT
from ops.errors import InputError, OpsError
from ops.site import builder, deploy, links, releases, source
from ops.site import settings as site_settings

EXAMPLE = REPO_ROOT / "examples" / "course-site"


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT)


# ---------------------------------------------------------------- links
def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    out = tmp_path / "out"
    for rel, body in pages.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(body)
    return out


def test_links_that_resolve_pass(tmp_path: Path) -> None:
    out = _site(tmp_path, {
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
    out = _site(tmp_path, {"info/index.html": f'<p><a href="{link}">x</a></p>',
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


def test_liquid_error_in_an_include(tmp_path: Path) -> None:
    src = _page(tmp_path, "_includes/x.html", "{% if %}\n")
    out = "Liquid Exception: Liquid syntax error (line 1): Syntax Error in tag 'if' in " \
          "/_includes/x.html\n"
    err = builder.parse_errors(out, src)
    assert isinstance(err, InputError) and err.path == str(src / "_includes/x.html")
    assert err.line == 1


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


def test_staff_without_a_name(tmp_path: Path) -> None:
    (tmp_path / "_data").mkdir()
    (tmp_path / "_data" / "authors.yml").write_text("- name: A\n- role: TA\n")
    with pytest.raises(InputError) as e:
        source.staff_names(tmp_path)
    assert e.value.line == 2


# ---------------------------------------------------------------- releases
def test_release_name_from_git_time_and_state(tmp_path: Path) -> None:
    when = dt.datetime(2026, 11, 26, 9, 5, 7, tzinfo=dt.UTC)
    assert releases.release_name(tmp_path, when) == "20261126T090507Z-nogit"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.md").write_text("a")
    subprocess.run([*git, "add", "a.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    sha = subprocess.run([*git, "rev-parse", "--short=7", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert releases.release_name(tmp_path, when) == f"20261126T090507Z-{sha}"
    (tmp_path / "a.md").write_text("b")
    name = releases.release_name(tmp_path, when)
    assert name == f"20261126T090507Z-{sha}-dirty"
    assert releases.RELEASE_RE.match(name)


def test_content_hash_ignores_the_marker_and_sees_every_byte(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text("x")
    h = releases.content_hash(tmp_path)
    (tmp_path / releases.MARKER).write_text("name=1\n")
    assert releases.content_hash(tmp_path) == h
    (tmp_path / "a" / "index.html").write_text("y")
    assert releases.content_hash(tmp_path) != h


R = [f"2026010{i}T000000Z-abc1234" for i in range(1, 8)]  # oldest first


def test_prune_keeps_the_newest() -> None:
    assert releases.to_prune(R, 5, R[-1], R[-2]) == R[:2]
    assert releases.to_prune(R[:3], 5, R[2], R[1]) == []


def test_prune_never_removes_current_or_previous() -> None:
    # after a rollback current is old; a new deploy makes the old current "previous"
    assert releases.to_prune(R, 3, R[-1], R[0]) == R[1:4]
    assert R[0] not in releases.to_prune(R, 2, R[-1], R[0])
    assert R[-1] not in releases.to_prune(R, 2, R[-1], R[0])


def test_prune_ignores_foreign_names_and_refuses_keep_below_two() -> None:
    assert releases.to_prune([*R, "backup", ".x.partial"], 6, R[-1], R[-2]) == R[:1]
    with pytest.raises(ValueError):
        releases.to_prune(R, 1, R[-1], R[-2])


def test_previous_of() -> None:
    assert releases.previous_of(R, R[-1]) == R[-2]
    assert releases.previous_of(R, R[0]) is None
    assert releases.previous_of(R, None) is None


# ---------------------------------------------------------------- deploy plumbing
def test_ssh_argv_is_argv_and_uses_sudo_for_non_root() -> None:
    from ops.inventory import Host

    h = Host("web1", ["all", "web"], {"ansible_host": "10.0.0.5", "ansible_port": 2222,
                                       "ansible_user": "admin",
                                       "ansible_ssh_private_key_file": "/k",
                                       "ansible_ssh_common_args": "-o A=b"})
    argv = deploy.ssh_argv(h, "echo $1", "/srv/x y")
    assert argv[:3] == ["ssh", "-p", "2222"] and argv[7:9] == ["-i", "/k"]
    assert argv[-3:-1] == ["admin@10.0.0.5", "--"]
    assert argv[-1] == "sudo -n sh -c 'echo $1' sh '/srv/x y'"


def test_tarball_roundtrip(tmp_path: Path) -> None:
    import io
    import tarfile

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.html").write_text("hi")
    data = deploy.tarball(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["d", "d/f.html"]
        assert all(m.uid == 0 for m in tar.getmembers())


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
        site_settings(inv)
    assert (e.value.path, e.value.line) == (str(inv / "group_vars" / "all.yml"), line)
    assert message in str(e.value)


def test_settings_from_role_defaults(tmp_path: Path) -> None:
    s = site_settings(_inventory(tmp_path, ""))
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

    assert provision_wanted(_inventory(tmp_path / "a", "")) is True
    with pytest.raises(InputError):
        provision_wanted(_inventory(tmp_path / "b", "website_keep_releases: 0\n"))
    with pytest.raises(InputError):
        provision_wanted(_inventory(tmp_path / "c", "website_baseurl: /elsewhere\n"))
    inv = _inventory(tmp_path / "d", "")
    (inv / "group_vars" / "all.yml").write_text("course_code: x\n")
    assert provision_wanted(inv) is False
