"""The course website on the provisioned lab, through the real CLI and over HTTP(S) on the
ports ctl publishes on 127.0.0.1 (``lab_ports`` in hosts.yml): `ops provision` deployed the
example site and `ops verify website` passes; a real browser renders the info page; a
no-change redeploy uploads nothing; a deploy under a bounded request loop fails no request
and serves the old or the new release only; rollback restores the previous content; old
releases are pruned; a broken link fails the build and changes nothing; a semester is
archived under its own baseurl.

At real size and shape (issue 14), the generated big site (ops/site/sample.py: 3,000 files,
300 MB, empty config values, a local theme standing in for a remote one, plugins, static
archived semesters, a semester folder without index, PDFs), made once per test session:
it builds with its link check within 60 s, each page read once; it deploys and is served
over HTTPS (a page of the current semester, one of an archived semester, the theme layered
under the site); a one-page change goes by delta (the bytes sent measured, unchanged files
hard links between releases); a no-change deploy sends nothing; rollback restores the
previous page over HTTP. `ops site serve` previews and rebuilds on change.

Shares the session's provisioned lab (fixture ``provisioned_lab``: the inventory Path) and
leaves it serving the example site, as provision left it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ops import REPO_ROOT
from ops.inventory import load
from ops.site import sample
from ops.site import source as site_source
from tests.lab.conftest import docker_exec, ops, verify_with_faults
from tests.lab.labtools import chromium

pytestmark = pytest.mark.lab
EXAMPLE = REPO_ROOT / "examples" / "course-site"
BASEURL = site_source.load(EXAMPLE).baseurl
ROOT = "/srv/course-website"  # role website's default; the lab does not change it
ARTIFACTS = REPO_ROOT / "artifacts"


def lab_port(inv: Path, port: int) -> int:
    """The 127.0.0.1 port the lab publishes the web host's ``port`` on."""
    web = load(inv).hosts_in("web")[0]
    return int(web.vars["lab_ports"][port])


def tls_context(inv: Path) -> ssl.SSLContext:
    """Trust the lab's own CA (its server certificate names 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(inv / ".lab" / "tls" / "ca.crt"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(inv: Path, path: str, *, scheme: str = "https", timeout: float = 5
          ) -> tuple[int, dict[str, str], str]:
    port = lab_port(inv, 443 if scheme == "https" else 80)
    opener = urllib.request.build_opener(
        _NoRedirect, urllib.request.HTTPSHandler(context=tls_context(inv)))
    try:
        with opener.open(f"{scheme}://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, \
                r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, ""


def site_copy(tmp: Path, marker: str) -> Path:
    """The example site plus a page /marker/ that says ``marker``."""
    src = tmp / f"site-{marker}"
    shutil.copytree(EXAMPLE, src)
    (src / "marker.md").write_text(f"---\ntitle: Marker\npermalink: /marker/\n---\n"
                                   f"release-marker:{marker}\n")
    return src


def releases_on_ctl(inv: Path) -> list[str]:
    from tests.lab.conftest import LAB_NAME

    name = yaml.safe_load((inv / "group_vars" / "all.yml").read_text()).get("lab_name",
                                                                           LAB_NAME)
    out = subprocess.run(["docker", "exec", f"{name}-ctl", "ls", "-1", f"{ROOT}/releases"],
                         capture_output=True, text=True, check=True).stdout
    return [r for r in out.split() if not r.startswith(".")]


@pytest.fixture
def lab(provisioned_lab: Path):  # noqa: ANN201
    """The provisioned lab; a test that deployed another site leaves the example again."""
    yield provisioned_lab
    if fetch(provisioned_lab, f"{BASEURL}/marker/")[0] != 404:
        ops(provisioned_lab, "site", "deploy", str(EXAMPLE), check=False)


def test_provision_deployed_the_site_and_it_verifies(lab: Path, tmp_path: Path) -> None:
    junit = tmp_path / "website.xml"
    ops(lab, "verify", "website", "--junit", str(junit))
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) >= 15
    assert not [c for c in cases if c.find("failure") is not None or
                c.find("error") is not None or c.find("skipped") is not None]


def test_verify_website_fails_on_a_readable_tls_key(lab: Path, tmp_path: Path) -> None:
    key = next(line.split()[1].rstrip(";") for line in docker_exec(
        "ctl", "sh", "-c", "cat /etc/nginx/sites-enabled/*").splitlines()
        if line.strip().startswith("ssl_certificate_key"))
    mode = docker_exec("ctl", "stat", "-c", "%a", key).strip()
    docker_exec("ctl", "chmod", "0644", key)
    try:
        failed = verify_with_faults(lab, "website", tmp_path / "website.xml")
        assert failed == {"test_tls_key_is_root_only[ansible://ctl]"}, failed
    finally:
        docker_exec("ctl", "chmod", mode, key)


def test_http_redirects_and_https_serves_the_info_page(lab: Path) -> None:
    status, headers, _ = fetch(lab, f"{BASEURL}/info/", scheme="http")
    assert status == 301 and headers["location"].startswith("https://")
    status, headers, body = fetch(lab, f"{BASEURL}/info/")
    assert status == 200 and site_source.load(EXAMPLE).title in body
    assert "max-age=" in headers["strict-transport-security"]


def test_the_servers_page_names_the_labs_login_node_hub_and_profiles(lab: Path) -> None:
    """website_cluster_info (the lab's): the page's facts come from the inventory."""
    status, _, body = fetch(lab, f"{BASEURL}/servers/")
    assert status == 200
    assert "ssh you@ctl" in body and "https://ctl/hub/" in body
    assert "<td>CPU (1 core)</td>" in body and "<td>01:00:00</td>" in body  # the lab's


def test_a_real_browser_renders_syllabus_and_staff(lab: Path) -> None:
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.set_page_load_timeout(30)
        driver.get(f"https://127.0.0.1:{lab_port(lab, 443)}{BASEURL}/info/")
        rows = len(driver.find_elements(By.CSS_SELECTOR, "table#syllabus tbody tr"))
        holidays = [e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                         "table#syllabus tr.holiday")]
        staff = [e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                      "#course-staff .staff-name")]
        css_applied = driver.execute_script(
            "return getComputedStyle(document.querySelector('.site-header'))"
            ".backgroundColor")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "website-info.png"
        assert driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    schedule = yaml.safe_load((EXAMPLE / "_data" / "schedule.yml").read_text())
    assert rows == len(schedule)
    assert len(holidays) == sum(1 for w in schedule if w.get("holiday"))
    assert holidays and all("NO CLASS" in h for h in holidays)
    assert staff == site_source.staff_names(EXAMPLE)
    assert css_applied == "rgb(11, 61, 98)"  # the stylesheet loaded under the baseurl
    assert shot.stat().st_size > 10_000


def test_a_redeploy_without_changes_uploads_nothing(lab: Path) -> None:
    before = releases_on_ctl(lab)
    p = ops(lab, "site", "deploy", str(EXAMPLE))
    assert "up to date" in p.stdout + p.stderr
    assert releases_on_ctl(lab) == before


def test_deploy_under_load_fails_no_request_and_rollback_restores(lab: Path,
                                                                   tmp_path: Path) -> None:
    ops(lab, "site", "deploy", str(site_copy(tmp_path, "old")))
    assert "release-marker:old" in fetch(lab, f"{BASEURL}/marker/")[2]
    new = site_copy(tmp_path, "new")
    seen: dict[str, int] = {"old": 0, "new": 0}
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        # bounded in time (the deadline), and in count by the pause between requests; it
        # runs until the deploy is over (stop), however fast the runner
        deadline = time.monotonic() + 180
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            time.sleep(0.01)
            try:
                status, _, body = fetch(lab, f"{BASEURL}/marker/", timeout=5)
            except OSError as exc:
                failures.append(f"request {n}: {exc}")
                continue
            if status != 200:
                failures.append(f"request {n}: HTTP {status}")
            elif "release-marker:old" in body:
                seen["old"] += 1
            elif "release-marker:new" in body:
                seen["new"] += 1
            else:
                failures.append(f"request {n}: neither release: {body[:200]!r}")

    loop = threading.Thread(target=hammer)
    loop.start()
    try:
        time.sleep(0.5)
        ops(lab, "site", "deploy", str(new))
        time.sleep(0.5)
    finally:
        stop.set()
        loop.join()
    print(f"requests during the deploy: {seen} old/new, {len(failures)} failed")
    assert failures == []
    assert seen["old"] > 0 and seen["new"] > 0
    assert "release-marker:new" in fetch(lab, f"{BASEURL}/marker/")[2]

    ops(lab, "site", "rollback")
    assert "release-marker:old" in fetch(lab, f"{BASEURL}/marker/")[2]


def test_old_releases_are_pruned(lab: Path, tmp_path: Path) -> None:
    for i in range(4):
        ops(lab, "site", "deploy", str(site_copy(tmp_path, f"p{i}")), "--keep", "3")
    kept = releases_on_ctl(lab)
    assert len(kept) == 3
    assert "release-marker:p3" in fetch(lab, f"{BASEURL}/marker/")[2]
    ops(lab, "site", "rollback")  # the previous release was kept
    assert "release-marker:p2" in fetch(lab, f"{BASEURL}/marker/")[2]
    ops(lab, "site", "rollback")  # rollback swaps current and previous: undone
    assert "release-marker:p3" in fetch(lab, f"{BASEURL}/marker/")[2]


def test_a_broken_link_fails_the_build_and_changes_nothing(lab: Path, tmp_path: Path) -> None:
    src = site_copy(tmp_path, "broken")
    (src / "info.md").write_text((src / "info.md").read_text() +
                                 "\n[gone]({{ '/lectures/lecture99/' | relative_url }})\n")
    before = fetch(lab, f"{BASEURL}/marker/")[2]
    kept = releases_on_ctl(lab)
    p = ops(lab, "site", "deploy", str(src), check=False)
    assert p.returncode == 1
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ops: error:")]
    assert errors == [f"ops: error: broken link on info/index.html: {BASEURL}/lectures/"
                      "lecture99/ (no such page or file in the build); fix the link in "
                      f"{src}; every internal link goes through relative_url; a link to "
                      "accept as it is goes in website_link_check_allow"]
    assert "Traceback" not in p.stderr
    assert releases_on_ctl(lab) == kept
    assert fetch(lab, f"{BASEURL}/marker/")[2] == before


def test_a_liquid_error_names_file_and_line(lab: Path, tmp_path: Path) -> None:
    src = site_copy(tmp_path, "liquid")
    lines = (src / "info.md").read_text().splitlines()
    lines[9] += " {% bogus %}"
    (src / "info.md").write_text("\n".join(lines) + "\n")
    p = ops(lab, "site", "build", str(src), "--out", str(tmp_path / "out"), check=False)
    assert p.returncode == 3
    assert p.stderr.strip().splitlines()[-1].startswith(
        f"ops: error: {src / 'info.md'}:10: Liquid error: Unknown tag 'bogus'")


def test_a_liquid_error_in_an_include_names_the_include(lab: Path, tmp_path: Path) -> None:
    src = site_copy(tmp_path, "include")
    inc = src / "_includes" / "course_staff.html"
    lines = inc.read_text().splitlines()
    lines[1] += " {% bogus %}"
    inc.write_text("\n".join(lines) + "\n")
    p = ops(lab, "site", "build", str(src), "--out", str(tmp_path / "out"), check=False)
    assert p.returncode == 3
    assert p.stderr.strip().splitlines()[-1].startswith(
        f"ops: error: {inc}:2: Liquid error: Unknown tag 'bogus'")


def test_a_semester_is_archived_under_its_own_baseurl(lab: Path) -> None:
    ops(lab, "site", "archive", "2026-winter", str(EXAMPLE), "--force")  # the lab is reused
    p = ops(lab, "site", "archive", "2026-winter", str(EXAMPLE), check=False)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ops: error:")]
    assert p.returncode == 1 and len(errors) == 1 and "archived already" in errors[0]
    status, _, body = fetch(lab, f"{BASEURL}/semesters/2026-winter/info/")
    assert status == 200
    assert f'href="{BASEURL}/semesters/2026-winter/assets/css/main.css"' in body
    assert fetch(lab, f"{BASEURL}/semesters/2026-winter/assets/css/main.css")[0] == 200
    ops(lab, "site", "deploy", str(EXAMPLE), "--force")  # the archive outlives deploys
    assert fetch(lab, f"{BASEURL}/semesters/2026-winter/info/")[0] == 200


# ---------------------------------------------------------------- a site of real size and shape
@pytest.fixture(scope="session")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> sample.Made:
    """The generated big site: made once per test session (a few seconds), never committed."""
    made = sample.make(tmp_path_factory.mktemp("big-site") / "site")
    print(f"generated {made.files} files, {made.bytes / 1e6:.0f} MB in {made.source}")
    return made


@pytest.fixture
def big_lab(provisioned_lab: Path):  # noqa: ANN201
    """The lab with what the big site needs from the inventory (jemoji skipped, its folder
    without index accepted), in group_vars/web.yml; removed after, the example site put
    back."""
    web_yml = provisioned_lab / "group_vars" / "web.yml"
    web_yml.write_text(yaml.safe_dump({"website_skip_plugins": sample.SKIP_PLUGINS,
                                       "website_link_check_allow": sample.ALLOW}))
    try:
        yield provisioned_lab
    finally:
        web_yml.unlink()
        ops(provisioned_lab, "site", "deploy", str(EXAMPLE), check=False)


def test_the_big_site_builds_with_its_link_check_within_a_minute(
        big_lab: Path, big_site: sample.Made, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ops import engine, site
    from ops.site import builder, links

    options = site.build_options(big_lab)
    plan = site.plan_build(big_site.source, options)
    builder.ensure_image(engine.client(), site_packages=plan.plugins.packages)  # once
    reads: dict[str, int] = {}
    real_read = Path.read_text

    def counting_read(self: Path, *a: object, **k: object) -> str:
        if tmp_path in self.parents:
            reads[str(self)] = reads.get(str(self), 0) + 1
        return real_read(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(links.Path, "read_text", counting_read)
    said: list[str] = []
    built = site.build(big_site.source, tmp_path / "out", options=options, log=said.append)
    print(f"big site build + link check: {built.seconds:.1f} s ({built.phases})")
    assert built.seconds <= 60
    assert built.report is not None and built.report.pages > 900
    assert len(reads) == built.report.pages and set(reads.values()) == {1}  # each page once
    assert len(built.report.allowed) == 1  # the semester folder without index, accepted
    assert f"{sample.BASEURL}/semesters/{sample.NO_INDEX}/" == built.report.allowed[0].link
    assert any("plugin jemoji is skipped" in s for s in said)
    assert any(s.startswith("theme minimal-mistakes (remote_theme): the site's _themes/")
               for s in said)
    assert any(sample.MATHJAX.split("/npm")[0] in s and "script-src" in s for s in said)
    out = tmp_path / "out"
    # the theme is layered under the site: the site's footer, the theme's layout, data, Sass
    page = (out / "lectures/lectures007/index.html").read_text()
    assert 'class="site-footer"' in page and "the theme's footer" not in page
    assert 'class="page__title"' in page and sample.MATHJAX in page
    assert "Updated:" in (out / "info/index.html").read_text()  # the theme's _data
    assert "#222" in (out / "assets/css/main.css").read_text()  # the theme's _sass
    # a static semester copied as it is, its Sphinx-style _static folder included
    static = big_site.source / "semesters" / sample.STATIC_SEMESTERS[0]
    assert (out / "semesters" / sample.STATIC_SEMESTERS[0] / "_static/theme.css").read_text() \
        == (static / "_static/theme.css").read_text()
    assert (out / "page2/index.html").is_file()  # jekyll-paginate ran


def _host_fetch_ok(inv: Path, path: str, text: str) -> None:
    status, headers, body = fetch(inv, path, timeout=15)
    assert status == 200, f"{path}: HTTP {status}"
    assert text in body, f"{path}: {text!r} not in the page"


def test_the_big_site_deploys_by_delta_is_served_and_rolls_back(
        big_lab: Path, big_site: sample.Made) -> None:
    from ops import site

    def quiet(_: str) -> None:
        pass

    lab = load(big_lab)
    # the first deploy: the whole site (nothing of it is on the host yet)
    _, first = site.deploy_site(lab, big_site.source, log=quiet)
    assert [r.action for r in first] == ["deployed"]
    assert first[0].sent is not None and first[0].sent.bytes > 0.9 * big_site.bytes
    print(f"first deploy: {first[0].sent.bytes / 1e6:.1f} MB in {first[0].seconds:.1f} s")
    _host_fetch_ok(big_lab, big_site.current_page, "Lecture 7")
    _host_fetch_ok(big_lab, big_site.archived_page,
                   f"Lecture 1 ({sample.STATIC_SEMESTERS[0]})")
    assert fetch(big_lab, f"{BASEURL}/semesters/{sample.NO_INDEX}/")[0] in (403, 404)

    # a no-change deploy sends nothing
    _, same = site.deploy_site(lab, big_site.source, log=quiet)
    assert [(r.action, r.sent) for r in same] == [("up to date", None)]

    # a one-page change: only what changed is sent, the rest is hard-linked
    sample.change_one_page(big_site, "delta-1")
    _, delta = site.deploy_site(lab, big_site.source, log=quiet)
    sent = delta[0].sent
    assert sent is not None and delta[0].action == "deployed"
    print(f"one-page deploy: {sent.bytes} bytes ({100 * sent.bytes / big_site.bytes:.3f}% "
          f"of the site), {sent.files} files, {delta[0].seconds:.1f} s")
    assert sent.bytes <= 0.01 * big_site.bytes and sent.files <= 10
    _host_fetch_ok(big_lab, big_site.current_page, "change-marker:delta-1")
    pdf = "assets/slides/lectures00.pdf"
    inodes = docker_exec("ctl", "stat", "-c", "%i", f"{ROOT}/current/{pdf}",
                         f"{ROOT}/previous/{pdf}").split()
    assert len(inodes) == 2 and inodes[0] == inodes[1]  # one file on the disk, two releases

    # rollback restores the previous page over HTTP; a second one undoes it
    ops(big_lab, "site", "rollback")
    status, _, body = fetch(big_lab, big_site.current_page)
    assert status == 200 and "change-marker:" not in body and "Lecture 7" in body
    ops(big_lab, "site", "rollback")
    _host_fetch_ok(big_lab, big_site.current_page, "change-marker:delta-1")


def test_a_semester_folder_without_index_is_a_broken_link_on_its_page(lab: Path,
                                                                       tmp_path: Path) -> None:
    src = site_copy(tmp_path, "noindex")
    (src / "semesters/2019-spring/slides").mkdir(parents=True)
    (src / "semesters/2019-spring/slides/l1.pdf").write_bytes(b"%PDF")
    index = src / "semesters/index.md"
    index.write_text(index.read_text() +
                     "- [2019]({{ '/semesters/2019-spring/' | relative_url }})\n")
    p = ops(lab, "site", "build", str(src), "--out", str(tmp_path / "out"), check=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith(
        f"ops: error: broken link on semesters/index.html: {BASEURL}/semesters/2019-spring/ "
        "(a folder without an index page)")


def test_raw_sources_in_a_semester_colliding_with_a_page_name_both(lab: Path,
                                                                  tmp_path: Path) -> None:
    src = site_copy(tmp_path, "collide")
    (src / "semesters/2024").mkdir()
    (src / "semesters/2024/info.md").write_text("---\ntitle: Info 2024\npermalink: /info/\n"
                                                "---\nold info\n")
    p = ops(lab, "site", "build", str(src), "--out", str(tmp_path / "out"), check=False)
    assert p.returncode == 3
    last = p.stderr.strip().splitlines()[-1]
    assert "info/index.html is made from both" in last
    assert "info.md" in last and "semesters/2024/info.md" in last


def test_ops_site_serve_previews_on_loopback_and_rebuilds_on_change(lab: Path,
                                                                   tmp_path: Path) -> None:
    import signal
    import sys

    src = site_copy(tmp_path, "serve1")
    proc = subprocess.Popen([sys.executable, "-m", "ops", "-i", str(lab), "site", "serve",
                             str(src), "--port", "0"], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        url = ""
        while not url and time.monotonic() < deadline and proc.poll() is None:
            url = next((ln.split()[2] for ln in lines if "serving http://127.0.0.1:" in ln), "")
            time.sleep(0.2)
        assert url.startswith("http://127.0.0.1:"), "".join(lines)

        def marker() -> str:
            try:
                with urllib.request.urlopen(url + "marker/", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return ""

        assert "release-marker:serve1" in marker()
        (src / "marker.md").write_text("---\ntitle: Marker\npermalink: /marker/\n---\n"
                                       "release-marker:serve2\n")
        while "release-marker:serve2" not in marker() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "release-marker:serve2" in marker(), "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130


@pytest.mark.skipif(os.environ.get("OPS_TEST_RUBYGEMS") != "1",
                    reason="the bundler builder needs rubygems.org: set OPS_TEST_RUBYGEMS=1 "
                    "where it is reachable (not on the lab's machines)")
def test_the_bundler_builder_installs_the_gemfile_lock(lab: Path, tmp_path: Path) -> None:
    import shutil as sh

    if sh.which("bundle") is None:
        pytest.skip("OPS_TEST_RUBYGEMS=1 but no `bundle` here to write the Gemfile.lock")
    src = site_copy(tmp_path, "bundler")
    (src / "Gemfile").write_text('source "https://rubygems.org"\ngem "jekyll", "~> 4.3"\n'
                                 'group :jekyll_plugins do\n  gem "jekyll-feed"\nend\n')
    subprocess.run(["bundle", "lock"], cwd=src, check=True, capture_output=True, timeout=600)
    cfg = src / "_config.yml"
    cfg.write_text(cfg.read_text() + "plugins: [jekyll-feed]\n")
    web_yml = lab / "group_vars" / "web.yml"
    web_yml.write_text("website_builder: bundler\n")
    try:
        p = ops(lab, "site", "build", str(src), "--out", str(tmp_path / "out"), timeout=1800)
    finally:
        web_yml.unlink()
    assert "site-builder-bundle:" in p.stderr and (tmp_path / "out" / "feed.xml").is_file()
