"""The site build's pure parts at real size and shape: any Jekyll config loads, themes and
plugins resolved (with their messages), semesters static or rendered, Jekyll's conflicts,
the link checker's semester rules, allow list and external origins, the CSP check, the
preview server."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ops.errors import InputError, OpsError
from ops.site import Options, builder, links, plan_build, plugins, sample, serve, source, themes
from tests.unit.sites import built_pages

CONFIG = """\
# a comment at the top
title: "Course"   # a comment after a value
baseurl: "/cs"
teaser:   # an empty value with a comment
logo:
words_per_minute:\t200
name: &staff "The staff"
author:
  name: *staff
  bio:
plugins: [jekyll-sitemap]
"""


def site(tmp_path: Path, config: str = CONFIG, files: dict[str, str] | None = None) -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "_config.yml").write_text(config)
    for rel, text in (files or {}).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


# ---------------------------------------------------------------- config loading
def test_empty_values_comments_anchors_and_a_tab_load(tmp_path: Path) -> None:
    cfg = source.load(site(tmp_path))
    assert (cfg.title, cfg.baseurl, cfg.warnings) == ("Course", "/cs", [])
    assert [(p.value, p.line) for p in cfg.plugins] == [("jekyll-sitemap", 11)]


def test_a_duplicate_key_is_a_warning_with_both_lines(tmp_path: Path) -> None:
    cfg = source.load(site(tmp_path, CONFIG + "author:\n  bio: x\n  bio: y\ntitle: Later\n"))
    assert cfg.title == "Later"  # Jekyll takes the last
    cfg_file = tmp_path / "src" / "_config.yml"
    assert cfg.warnings == [
        f"{cfg_file}:12: duplicate key 'author' (also at line 8); Jekyll takes this one, "
        "the last",
        f"{cfg_file}:14: duplicate key 'bio' (also at line 13); Jekyll takes this one, the last",
        f"{cfg_file}:15: duplicate key 'title' (also at line 2); Jekyll takes this one, the last",
    ]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("title: x\nbaseurl: /cs\nplugins: [a\n", 4, "not valid YAML"),
    ("title: x\nbaseurl: /cs\nlist:\n\t- a\n", 4, "not valid YAML"),
    ("title: x\nbaseurl: /cs\nplugins: jekyll-feed\n", 3, "plugins must be a list"),
    ("title: x\nbaseurl: /cs\nremote_theme: [a]\n", 3, "remote_theme must be a name"),
    ("title: x\nbaseurl: /cs\nstart: 2027-02-30\n", 3, "start: not a valid value"),
])
def test_an_invalid_config_names_file_and_line(tmp_path: Path, text: str, line: int,
                                               message: str) -> None:
    with pytest.raises(InputError) as e:
        source.load(site(tmp_path, text))
    assert (e.value.path, e.value.line) == (str(tmp_path / "src" / "_config.yml"), line)
    assert message in str(e.value)


def test_an_alias_bomb_in_the_config_or_data_is_refused_with_its_line(tmp_path: Path) -> None:
    bomb = "a: &a [" + ", ".join(["x"] * 10) + "]\n"
    for i, c in enumerate("bcdefgh"):
        bomb += f"{c}: &{c} [" + ", ".join([f"*{'abcdefgh'[i]}"] * 10) + "]\n"
    started = time.monotonic()
    with pytest.raises(InputError) as e:
        source.load(site(tmp_path / "1", "title: x\nbaseurl: /cs\n" + bomb))
    assert e.value.line == 8 and "aliases expand" in str(e.value)
    with pytest.raises(InputError) as e:
        source.load(site(tmp_path / "2", "title: x\nbaseurl: /cs\n",
                         {"_data/bomb.yml": bomb}))
    assert e.value.path.endswith("_data/bomb.yml") and e.value.line == 6
    assert time.monotonic() - started < 2


def test_the_generated_big_sites_config_loads(tmp_path: Path) -> None:
    made = sample.make(tmp_path / "big", files=1300, total_bytes=3_000_000)
    cfg = source.load(made.source)
    assert cfg.baseurl == sample.BASEURL and cfg.warnings == []
    assert cfg.theme is not None and cfg.theme.key == "remote_theme"
    assert [p.value for p in cfg.plugins] == ["jekyll-paginate", "jekyll-sitemap",
                                              "jekyll-gist", "jekyll-feed", "jemoji",
                                              "jekyll-include-cache"]
    assert cfg.staff == ["Chaim Baskin", "Noa Levinson"]  # authors.yml is a mapping
    assert made.files == sum(1 for p in made.source.rglob("*") if p.is_file())


# ---------------------------------------------------------------- themes
@pytest.mark.parametrize(("key", "value", "name"), [
    ("remote_theme", "mmistakes/minimal-mistakes@4.24.0", "minimal-mistakes"),
    ("remote_theme", "https://github.com/pages-themes/cayman", "cayman"),
    ("remote_theme", "owner/theme.git", "theme"),
    ("theme", "minima", "minima"),
])
def test_theme_names(key: str, value: str, name: str) -> None:
    assert themes.theme_name(source.Setting(key, value, 1)) == name


def _theme_files(d: Path) -> Path:
    (d / "_layouts").mkdir(parents=True)
    (d / "_layouts" / "default.html").write_text("{{ content }}")
    return d


def test_theme_from_website_theme_dir_before_the_sites_themes(tmp_path: Path) -> None:
    src = site(tmp_path, "title: x\nbaseurl: /cs\nremote_theme: mmistakes/minimal-mistakes@4\n")
    _theme_files(src / "_themes" / "minimal-mistakes")
    cfg = source.load(src)
    t = themes.resolve(cfg)
    assert t is not None and t.path == src / "_themes" / "minimal-mistakes"
    kept = _theme_files(tmp_path / "kept")
    t = themes.resolve(cfg, kept)
    assert t is not None and (t.name, t.path) == ("minimal-mistakes", kept)


def test_a_debian_theme_needs_no_copy_and_is_installed(tmp_path: Path) -> None:
    cfg = source.load(site(tmp_path, "title: x\nbaseurl: /cs\ntheme: minima\n"))
    t = themes.resolve(cfg)
    assert t is not None and t.path is None and t.package == "jekyll-theme-minima"
    assert plugins.plan(cfg, t).packages == ["jekyll-theme-minima"]


def test_a_missing_theme_stops_at_its_line_saying_how_to_provide_it(tmp_path: Path) -> None:
    src = site(tmp_path, "title: x\nbaseurl: /cs\n\nremote_theme: mmistakes/mm@4.24.0\n")
    with pytest.raises(InputError) as e:
        themes.resolve(source.load(src))
    assert (e.value.path, e.value.line) == (str(src / "_config.yml"), 4)
    assert "the theme is not here" in str(e.value)
    assert f"{src}/_themes/mm/" in e.value.hint and "website_theme_dir" in e.value.hint
    assert "git clone --depth 1 --branch 4.24.0 https://github.com/mmistakes/mm" in e.value.hint
    with pytest.raises(InputError) as e:  # a directory that holds no theme
        themes.resolve(source.load(src), tmp_path)
    assert "is not a theme's files" in str(e.value)


def test_a_local_theme_is_mounted_as_an_installed_gem(tmp_path: Path) -> None:
    theme = themes.Theme("minimal-mistakes", _theme_files(tmp_path / "t"),
                         source.Setting("remote_theme", "x/minimal-mistakes", 3), "here")
    inputs = builder.JekyllInputs(theme=theme, plugins=["jekyll-feed"], exclude=["a"],
                                  time="2026-01-01 00:00:00 +0000")
    ops_dir = tmp_path / "ops"
    ops_dir.mkdir()
    volumes = builder._ops_dir(ops_dir, inputs)
    assert volumes[str(theme.path)] == {"bind": "/ops/gems/gems/minimal-mistakes-0.0.0",
                                        "mode": "ro"}
    spec = (ops_dir / "gems/specifications/minimal-mistakes-0.0.0.gemspec").read_text()
    assert 's.name = "minimal-mistakes"' in spec and 's.version = "0.0.0"' in spec
    import yaml

    assert yaml.safe_load((ops_dir / "override.yml").read_text()) == {
        "theme": "minimal-mistakes", "remote_theme": None, "plugins": ["jekyll-feed"],
        "gems": [], "exclude": ["a"], "time": "2026-01-01 00:00:00 +0000"}
    assert builder.jekyll_argv("/cs", override=True)[-4:] == [
        "--config", "/src/_config.yml,/ops/override.yml", "--baseurl", "/cs"]


# ---------------------------------------------------------------- plugins
PLUGGED = "title: x\nbaseurl: /cs\nplugins:\n  - jekyll-sitemap\n  - jemoji\n" \
          "  - jekyll-remote-theme\n  - jekyll-feed\nremote_theme: o/t\n"


def test_a_plugin_debian_lacks_stops_at_its_line(tmp_path: Path) -> None:
    cfg = source.load(site(tmp_path, PLUGGED))
    with pytest.raises(InputError) as e:
        plugins.plan(cfg)
    assert e.value.line == 5
    assert e.value.message.endswith("plugin jemoji: the builder has no jemoji and no Debian "
                                    "package provides it")
    assert "website_skip_plugins" in e.value.hint


def test_plugins_from_debian_skipped_ones_and_the_remote_theme_loader(tmp_path: Path) -> None:
    src = site(tmp_path, PLUGGED)
    cfg = source.load(src)
    p = plugins.plan(cfg, skip=["jemoji", "jekyll-mentions"])
    assert p.packages == ["ruby-jekyll-feed", "ruby-jekyll-sitemap"]
    assert p.load == ["jekyll-sitemap", "jekyll-feed"]
    assert p.skipped == ["jemoji", "jekyll-remote-theme"]
    assert p.warnings[0] == (f"{src / '_config.yml'}:5: plugin jemoji is skipped "
                             "(website_skip_plugins): the pages are built without it")
    assert "jekyll-mentions is not a plugin of the site" in p.warnings[1]


def test_jekylls_missing_plugin_names_the_debian_package(tmp_path: Path) -> None:
    out = ("Dependency Error: Yikes! It looks like you don't have jekyll-sitemap or one of "
           "its dependencies installed.")
    e = builder.parse_errors(out, tmp_path)
    assert isinstance(e, OpsError) and "jekyll-sitemap" in str(e)
    assert "ruby-jekyll-sitemap" in e.hint


def test_builder_image_per_plugin_set_shares_the_jekyll_layer() -> None:
    plain = builder.render_dockerfile("base:1")
    plugged = builder.render_dockerfile("base:1", site_packages=["ruby-jekyll-feed"])
    assert plugged.startswith(plain.split("ENV")[0].rstrip())  # the same layers first
    assert "ruby-jekyll-feed" in plugged and "ruby-jekyll-feed" not in plain
    assert builder.image_tag("base:1") != builder.image_tag(
        "base:1", site_packages=["ruby-jekyll-feed"])


# ---------------------------------------------------------------- semesters
SEMESTERS = {
    "semesters/index.md": "---\ntitle: S\n---\nlist\n",
    "semesters/2020/index.html": "<html>pre-built</html>",
    "semesters/2020/_static/x.css": "a{}",
    "semesters/2021/index.md": "---\ntitle: raw\n---\nsources\n",
    "semesters/2022/notes.pdf": "%PDF",
    "semesters/old/index.html": "<html></html>",
}


def test_semesters_static_or_rendered_and_excluded(tmp_path: Path) -> None:
    src = site(tmp_path, files=SEMESTERS)
    found = source.semesters(src, ["semesters/old"])
    assert [(s.id, s.static, s.files) for s in found] == [("2020", True, 2),
                                                         ("2021", False, 1),
                                                         ("2022", True, 1)]


def test_a_build_plan_excludes_static_semesters_and_pins_the_time(tmp_path: Path) -> None:
    src = site(tmp_path, "title: x\nbaseurl: /cs\nexclude: [README.md]\n", SEMESTERS)
    plan = plan_build(src)
    assert plan.inputs.exclude == ["README.md", "semesters/2020", "semesters/2022",
                                   "semesters/old"]
    assert [s.id for s in plan.inputs.static] == ["2020", "2022", "old"]
    assert plan.inputs.plugins is None  # nothing skipped: the site's list as it is
    newest = max(p.stat().st_mtime for p in src.rglob("*") if p.is_file())
    assert plan.inputs.time == time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(newest))
    assert any("copied as they are (static): 2020, 2022, old" in s for s in plan.said)
    archive = plan_build(src, semesters=False)  # an archive build leaves them all out
    assert archive.inputs.static == [] and "semesters/2021" in (archive.inputs.exclude or [])


def test_static_semesters_are_hard_linked_and_a_collision_is_an_error(tmp_path: Path) -> None:
    src = site(tmp_path, files=SEMESTERS)
    out = tmp_path / "out"
    out.mkdir()
    static = [s for s in source.semesters(src) if s.static]
    assert builder.copy_static(static, src, out) == 4
    a, b = src / "semesters/2020/_static/x.css", out / "semesters/2020/_static/x.css"
    assert b.read_text() == "a{}" and os.stat(a).st_ino == os.stat(b).st_ino
    out2 = tmp_path / "out2"
    (out2 / "semesters/2020").mkdir(parents=True)
    (out2 / "semesters/2020/index.html").write_text("made by Jekyll")
    with pytest.raises(InputError) as e:
        builder.copy_static(static, src, out2)
    assert "is both in the static semester 2020 and made by Jekyll" in str(e.value)


def test_jekylls_destination_conflict_names_both_sources(tmp_path: Path) -> None:
    out = """\
       Conflict: The following destination is shared by multiple files.
                    The written file may end up with unexpected contents.
                    /out/info/index.html
                     - info.md
                     - /src/semesters/2024/info.md

                    done in 1.2 seconds."""
    e = builder.parse_errors(out, tmp_path)
    assert isinstance(e, InputError) and e.path == str(tmp_path / "info.md")
    assert "info/index.html is made from both info.md and semesters/2024/info.md" in str(e)
    assert "destination shared by multiple files" in str(e)


# ---------------------------------------------------------------- links
def test_a_semester_folder_without_index_is_broken_named_with_its_page(tmp_path: Path) -> None:
    out = built_pages(tmp_path, {
        "index.html": "home",
        "semesters/index.html": '<a href="/cs/semesters/2019/">2019</a>'
                                '<a href="/cs/semesters/2020/">2020</a>'
                                '<a href="/cs/semesters/2026-winter/">archived on the host</a>',
        "semesters/2019/slides/a.pdf": "%PDF",
        "semesters/2020/index.html": '<a href="/cs/semesters/2020/gone/">x</a>'
                                     '<a href="/cs/">the live site</a>',
    })
    assert [str(p) for p in links.check(out, "/cs")] == [
        "semesters/2020/index.html: /cs/semesters/2020/gone/ (no such page or file in the "
        "build)",
        "semesters/index.html: /cs/semesters/2019/ (a folder without an index page)",
    ]
    report = links.scan(out, "/cs", allow=["/cs/semesters/2019/", "/cs/semesters/2020/gone"])
    assert report.problems == [] and len(report.allowed) == 2


def test_links_in_scripts_and_comments_are_not_links(tmp_path: Path) -> None:
    got = links.html_links(
        '<!-- <a href="/gone/">old</a> --><script>var s = \'<img src="/nope.png">\';</script>'
        '<script src="/a.js"></script><A HREF=\'/b/\' title="x > y">b</A>'
        '<img srcset="/c.png 1x, /d.png 2x"><a href=/e/?a=1&amp;b=2>e</a>')
    assert [(x.url, x.tag, x.attr) for x in got] == [
        ("/a.js", "script", "src"), ("/b/", "a", "href"), ("/c.png", "img", "srcset"),
        ("/d.png", "img", "srcset"), ("/e/?a=1&b=2", "a", "href")]


def test_external_origins_by_directive_and_what_a_csp_blocks(tmp_path: Path) -> None:
    out = built_pages(tmp_path, {"index.html": (
        '<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex.js"></script>'
        '<script src="https://gist.github.com/u/1.js"></script>'
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=R">'
        '<iframe src="https://www.youtube.com/embed/x"></iframe>'
        '<img src="https://img.shields.io/badge.svg"><a href="https://d2l.ai/">not a load</a>'
        '<link rel="canonical" href="https://course.example/">')})
    report = links.scan(out, "/cs")
    assert {d: sorted(o) for d, o in report.origins.items()} == {
        "script-src": ["https://cdn.jsdelivr.net", "https://gist.github.com"],
        "style-src": ["https://fonts.googleapis.com"],
        "frame-src": ["https://www.youtube.com"],
        "img-src": ["https://img.shields.io"]}
    policy = ("default-src 'self'; script-src 'self' https://cdn.jsdelivr.net "
              "*.github.com; img-src 'self' https:; frame-src https://www.youtube.com")
    assert links.csp_blocked(policy, report.origins) == [
        ("style-src", "https://fonts.googleapis.com", "index.html")]  # default-src applies
    assert links.csp_blocked("default-src *", report.origins) == []


# ---------------------------------------------------------------- inventory options
def test_bad_website_build_vars_name_the_line(tmp_path: Path) -> None:
    from ops.site import build_options

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text(
        "website_theme_dir: themes/mm\nwebsite_csp: \"default-src  'self'\"\n"
        "website_skip_plugins: jemoji\n")
    with pytest.raises(InputError) as e:
        build_options(inv)
    assert e.value.line == 3 and "website_skip_plugins must be a list" in str(e.value)
    (inv / "group_vars" / "all.yml").write_text(
        "website_theme_dir: themes/mm\nwebsite_csp: \"default-src  'self'\"\n"
        "website_skip_plugins: [jemoji]\nwebsite_link_check_allow:\n")
    o = build_options(inv)
    assert o == Options([], inv.resolve() / "themes" / "mm", ["jemoji"], [],
                        "default-src 'self'", builder="debian", where=o.where)
    assert o.where["website_csp"] == f"{inv.resolve() / 'group_vars' / 'all.yml'}:2"


# ---------------------------------------------------------------- the preview
def test_the_preview_maps_urls_as_nginx_does(tmp_path: Path) -> None:
    root = built_pages(tmp_path, {"index.html": "home", "info/index.html": "info", "a.css": "",
                           ".course-ops-build": ""})
    assert serve.map_path("/", "/cs", root) == (302, "/cs/")
    assert serve.map_path("/cs", "/cs", root) == (301, "/cs/")
    assert serve.map_path("/cs/info", "/cs", root) == (301, "/cs/info/")
    assert serve.map_path("/cs/info/?x=1", "/cs", root) == (200, root / "info/index.html")
    assert serve.map_path("/cs/a.css", "/cs", root) == (200, root / "a.css")
    for path in ("/cs/.course-ops-build", "/cs/../etc/passwd", "/other/", "/cs/nope"):
        assert serve.map_path(path, "/cs", root)[0] == 404


def test_the_preview_serves_on_loopback_and_rebuilds_on_change(tmp_path: Path) -> None:
    src = site(tmp_path, files={"index.md": "v1"})
    said: list[str] = []
    fail = {"now": False}

    def build(out: Path) -> object:  # stands in for the Docker build
        if fail["now"]:
            raise OpsError("index.md:1: Liquid error")
        builder.prepare_out(src, out)
        (out / "index.html").write_text((src / "index.md").read_text())
        return type("Built", (), {"baseurl": "/cs"})()

    stop = threading.Event()
    t = threading.Thread(target=serve.serve, args=(src,),
                         kwargs={"port": 0, "build": build, "poll": 0.05, "stop": stop,
                                 "log": said.append})
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s.startswith("serving ") for s in said) and time.monotonic() < deadline:
            time.sleep(0.02)
        url = said[0].split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/cs/")

        def page() -> str:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()

        assert page() == "v1"
        (src / "index.md").write_text("v2")
        while page() != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert page() == "v2"
        fail["now"] = True  # a broken edit: the last good build stays up
        (src / "index.md").write_text("v3")
        while not any("build failed" in s for s in said) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert page() == "v2" and any("Liquid error" in s for s in said)
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive()


# ---------------------------------------------------------------- the bundler builder
def test_the_bundler_builder_is_tagged_by_the_lock_and_needs_it(tmp_path: Path) -> None:
    src = site(tmp_path, files={"Gemfile": 'gem "github-pages"\n'})
    with pytest.raises(InputError) as e:
        builder.bundle_files(src)
    assert e.value.path.endswith("Gemfile.lock") and "bundle lock" in e.value.hint
    text = builder.render_bundle_dockerfile("course-ops/site-builder:abc")
    assert "FROM course-ops/site-builder:abc" in text and "bundle install" in text
    a = builder.bundle_tag("b:1", b"gem 'x'", b"lock 1")
    assert a.startswith("course-ops/site-builder-bundle:")
    assert a != builder.bundle_tag("b:1", b"gem 'x'", b"lock 2")
    assert a == builder.bundle_tag("b:1", b"gem 'x'", b"lock 1")


def test_with_bundler_the_gemfile_has_the_theme_and_plugins(tmp_path: Path) -> None:
    src = site(tmp_path, PLUGGED)  # jemoji and a remote theme not here: bundler has them
    plan = plan_build(src, Options(builder="bundler"))
    assert plan.theme is None and plan.inputs.network and plan.inputs.plugins is None
    assert plan.plugins.packages == []
    assert not plan_build(site(tmp_path / "d", CONFIG)).inputs.network


def test_website_builder_must_be_debian_or_bundler(tmp_path: Path) -> None:
    from ops.site import build_options

    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text("x: 1\nwebsite_builder: gem\n")
    with pytest.raises(InputError) as e:
        build_options(inv)
    assert e.value.line == 2 and "neither debian nor bundler" in str(e.value)


# ---------------------------------------------------------------- the cluster's facts
def _inventory(tmp_path: Path, extra: str = "") -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    slurm_controller:\n      hosts:\n        login1: {}\n"
        "    web:\n      hosts:\n        login1: {}\n    gpu_servers:\n      hosts:\n"
        "        gpu1: {}\n")
    (inv / "group_vars" / "all.yml").write_text(
        "website_hostname: dl.example.edu\nslurm_pair_max_gpus: 2\n" + extra)
    return inv


def test_the_pages_get_the_clusters_facts_only_where_the_inventory_opts_in(
        tmp_path: Path) -> None:
    from ops import site as site_mod

    inv = _inventory(tmp_path)
    assert site_mod.build_options(inv).cluster is None  # the default: nothing
    inv = _inventory(tmp_path / "on", "website_cluster_info: true\n"
                     "jupyterhub_spawn_timeout: 300\n")
    (inv / "state").mkdir()
    (inv / "state" / "images.json").write_text(
        '{"version": 1, "variants": {"cpu": {"tag": "torch2.13.0-cpu-py3.11-abc", '
        '"digest": "sha256:' + "0" * 64 + '", "pushed_at": "2026-11-30T10:00:00+00:00"}}}')
    info = site_mod.build_options(inv).cluster
    assert info == {
        "login_host": "login1", "pair_max_gpus": 2, "max_time": "24:00:00",
        "hub_url": "https://dl.example.edu/hub/",
        "profiles": [{"name": "cpu", "display": "CPU (2 cores)", "cores": 2, "gpus": 0,
                      "time": "04:00:00"},
                     {"name": "gpu", "display": "1 GPU (2 cores)", "cores": 2, "gpus": 1,
                      "time": "04:00:00"}],
        "spawn_timeout_minutes": 5, "cull_idle_minutes": 60,
        "image_tag": "torch2.13.0-cpu-py3.11-abc"}
    # in the build's override config (site.course_cluster), not in the source; written as
    # JSON, so Ruby's YAML 1.1 keeps "04:00:00" a string (not the sexagesimal 14400)
    inputs = builder.JekyllInputs(cluster=info)
    assert inputs.override() == {"course_cluster": info}
    builder._ops_dir(tmp_path, inputs)
    assert '"time": "04:00:00"' in (tmp_path / "override.yml").read_text()


def test_a_cluster_info_that_is_no_bool_names_its_line(tmp_path: Path) -> None:
    from ops import site as site_mod

    inv = _inventory(tmp_path, "website_cluster_info: yes please\n")
    with pytest.raises(InputError) as e:
        site_mod.build_options(inv)
    assert e.value.line == 3 and "true or false" in str(e.value)
