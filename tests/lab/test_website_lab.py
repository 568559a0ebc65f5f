"""The course website on the provisioned lab, through the real CLI and over HTTP(S) on the
ports ctl publishes on 127.0.0.1 (``lab_ports`` in hosts.yml): `ops provision` deployed the
example site and `ops verify website` passes; a real browser renders the info page; a
no-change redeploy uploads nothing; a deploy under a bounded request loop fails no request
and serves the old or the new release only; rollback restores the previous content; old
releases are pruned; a broken link fails the build and changes nothing; a semester is
archived under its own baseurl.

Shares the session's provisioned lab (fixture ``provisioned_lab``: the inventory Path) and
leaves it serving the example site, as provision left it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
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
from ops.site import source as site_source
from tests.lab.conftest import ops

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


def test_http_redirects_and_https_serves_the_info_page(lab: Path) -> None:
    status, headers, _ = fetch(lab, f"{BASEURL}/info/", scheme="http")
    assert status == 301 and headers["location"].startswith("https://")
    status, headers, body = fetch(lab, f"{BASEURL}/info/")
    assert status == 200 and site_source.load(EXAMPLE).title in body
    assert "max-age=" in headers["strict-transport-security"]


def test_a_real_browser_renders_syllabus_and_staff(lab: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    for binary in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="ops-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                "--ignore-certificate-errors",  # the lab's private CA; in this test only
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
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
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
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
                      f"{src}; every internal link goes through relative_url"]
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
