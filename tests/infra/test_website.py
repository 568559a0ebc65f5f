"""The course website on the web hosts (role website + `ops site deploy`).

`ops verify website` runs this against the inventory's `web` group. What the site must say
comes from the inventory (website_* variables, role website's defaults where unset) and
from the site source it names (`_config.yml`: title, baseurl; `_data/authors.yml`: staff,
a list or a mapping of people; `semesters/<id>/`: its previous semesters). Requests are made
on the web host itself, to its own nginx.
"""

from __future__ import annotations

import html
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.conftest import ops_inventory

SECURITY_HEADERS = [
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
]


@dataclass
class Site:
    title: str
    baseurl: str
    staff: list[str]
    root: str
    keep: int
    key: str
    #: website_csp, its whitespace collapsed as the role sends it
    csp: str
    #: the semesters of the source (semesters/<id>/ with an index page)
    semesters: list[str]


def _site(config: pytest.Config) -> Site:
    cached = getattr(config, "_ops_site", None)
    if cached is not None:
        return cached
    from ops import site as site_mod
    from ops.errors import OpsError
    from ops.inventory import load_vars_only

    inv = Path(config.getoption("--ops-inventory"))
    try:
        web = ops_inventory(config).hosts_in("web") if (inv / "hosts.yml").is_file() else []
        found = web[0].vars if web else load_vars_only(inv)  # group_vars/web.yml included
        merged = {**site_mod.role_defaults(), **found}
        if not merged.get("website_source"):
            raise OpsError(f"{inv}/group_vars: website_source is not set",
                           hint="the spec reads the title and staff from the site source")
        cfg = site_mod.source.load(site_mod.resolve_source(inv.resolve(),
                                                           str(merged["website_source"])))
    except OpsError as exc:
        raise pytest.UsageError(str(exc)) from None
    semesters = [sem.id for sem in site_mod.source.semesters(cfg.source, cfg.exclude)
                 if (sem.path / "index.html").is_file() or (sem.path / "index.md").is_file()]
    site = Site(cfg.title, cfg.baseurl, cfg.staff, str(merged["website_root"]).rstrip("/"),
                int(merged["website_keep_releases"]), str(merged["website_tls_certificate_key"]),
                " ".join(str(merged["website_csp"]).split()), semesters)
    config._ops_site = site  # type: ignore[attr-defined]
    return site


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "staff_name" in metafunc.fixturenames:
        names = _site(metafunc.config).staff
        metafunc.parametrize("staff_name", names, ids=names)
    if "semester" in metafunc.fixturenames:
        ids = _site(metafunc.config).semesters
        metafunc.parametrize("semester", ids, ids=ids)


@pytest.fixture(scope="module")
def site(pytestconfig: pytest.Config) -> Site:
    return _site(pytestconfig)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def get(host, url: str) -> Response:  # noqa: ANN001
    """GET ``url`` on the host itself (-k: the name may not match localhost)."""
    cmd = host.run(f"curl -sk --max-time 10 -D - {shlex.quote(url)}")
    assert cmd.rc == 0, f"curl {url}: exit {cmd.rc}: {cmd.stderr}"
    head, _, body = cmd.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, body)


def test_nginx_is_installed(host) -> None:  # noqa: ANN001
    assert host.package("nginx").is_installed


def test_rsync_is_installed(host) -> None:  # noqa: ANN001
    # `ops site deploy` sends every release with it (only what changed)
    assert host.package("rsync").is_installed


def test_nginx_is_running_and_enabled(host) -> None:  # noqa: ANN001
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


@pytest.mark.parametrize("port", [80, 443])
def test_nginx_listens(host, port: int) -> None:  # noqa: ANN001
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_http_redirects_to_https(host, site: Site) -> None:  # noqa: ANN001
    r = get(host, f"http://localhost{site.baseurl}/info/")
    assert r.status == 301
    assert r.headers.get("location", "").startswith("https://")


def test_http_sends_no_hsts(host, site: Site) -> None:  # noqa: ANN001
    # HSTS over plain HTTP is ignored by browsers and tells of a misplaced header
    r = get(host, f"http://localhost{site.baseurl}/info/")
    assert "strict-transport-security" not in r.headers


def test_info_page_answers_with_the_course_title(host, site: Site) -> None:  # noqa: ANN001
    r = get(host, f"https://localhost{site.baseurl}/info/")
    assert r.status == 200
    assert site.title in html.unescape(r.body)  # Jekyll escapes & and quotes


def test_info_page_names_the_staff(host, site: Site, staff_name: str) -> None:  # noqa: ANN001
    r = get(host, f"https://localhost{site.baseurl}/info/")
    assert r.status == 200
    assert staff_name in html.unescape(r.body)


def test_info_page_has_the_syllabus(host, site: Site) -> None:  # noqa: ANN001
    body = get(host, f"https://localhost{site.baseurl}/info/").body
    assert 'id="syllabus"' in body


def _url(host, site: Site, kind: str) -> tuple[str, int]:  # noqa: ANN001
    """A page, the stylesheet it links, an image it shows, a page that does not exist."""
    info = f"https://localhost{site.baseurl}/info/"
    if kind == "page":
        return info, 200
    if kind == "not found":
        return f"https://localhost{site.baseurl}/no-such-page-course-ops-verify/", 404
    body = get(host, info).body
    marker, attr = ('rel="stylesheet"', "href") if kind == "stylesheet" else ("<img", "src")
    return f"https://localhost{_linked(body, marker, attr)}", 200


# nginx drops a server's add_header lines in a location with its own, and error pages get
# only those marked "always": a page, assets and a 404 each
@pytest.mark.parametrize("header", SECURITY_HEADERS)
@pytest.mark.parametrize("kind", ["page", "stylesheet", "image", "not found"])
def test_security_header_is_sent(host, site: Site, kind: str, header: str) -> None:  # noqa: ANN001
    url, status = _url(host, site, kind)
    r = get(host, url)
    assert r.status == status
    assert header in r.headers


def test_the_content_security_policy_is_website_csp(host, site: Site) -> None:  # noqa: ANN001
    h = get(host, f"https://localhost{site.baseurl}/info/").headers
    assert h.get("content-security-policy") == site.csp


def test_a_semester_of_the_source_is_served(host, site: Site, semester: str) -> None:  # noqa: ANN001
    # from the archive `ops site archive` made, when there is one of that id (it wins),
    # else from the release's own semesters/<id>/
    archived = host.file(f"{site.root}/semesters/{semester}/index.html")
    served_from = archived if archived.exists else \
        host.file(f"{site.root}/current/semesters/{semester}/index.html")
    r = get(host, f"https://localhost{site.baseurl}/semesters/{semester}/")
    assert r.status == 200
    assert r.body == served_from.content_string


def test_frames_are_refused(host, site: Site) -> None:  # noqa: ANN001
    h = get(host, f"https://localhost{site.baseurl}/info/").headers
    assert h.get("x-frame-options", "").upper() == "DENY" or \
        "frame-ancestors 'none'" in h.get("content-security-policy", "")


def test_no_directory_listing(host, site: Site) -> None:  # noqa: ANN001
    r = get(host, f"https://localhost{site.baseurl}/assets/")
    assert r.status in (403, 404)
    assert "Index of" not in r.body


def test_dot_files_are_not_served(host, site: Site) -> None:  # noqa: ANN001
    from ops.site.releases import MARKER

    assert get(host, f"https://localhost{site.baseurl}/{MARKER}").status == 404


def _linked(body: str, marker: str, attr: str) -> str:
    found = [ln for ln in body.splitlines() if marker in ln and f'{attr}="' in ln]
    assert found, f"the info page has no {marker}"
    return found[0].split(f'{attr}="', 1)[1].split('"', 1)[0]


def test_pages_and_stylesheets_are_revalidated(host, site: Site) -> None:  # noqa: ANN001
    # nothing is fingerprinted: a deploy must be seen at once (ETag, 304 when unchanged)
    page = get(host, f"https://localhost{site.baseurl}/info/")
    assert page.headers.get("cache-control") == "no-cache"
    css = get(host, _url(host, site, "stylesheet")[0])
    assert css.status == 200
    assert css.headers.get("cache-control") == "no-cache"
    assert css.headers.get("etag")


def test_images_are_cached(host, site: Site) -> None:  # noqa: ANN001
    img = get(host, _url(host, site, "image")[0])
    assert img.status == 200
    assert "max-age=" in img.headers.get("cache-control", "")


def test_current_points_at_a_release(host, site: Site) -> None:  # noqa: ANN001
    current = host.file(f"{site.root}/current")
    assert current.is_symlink
    assert current.linked_to.startswith(f"{site.root}/releases/")


def test_at_most_the_kept_number_of_releases(host, site: Site) -> None:  # noqa: ANN001
    releases = host.file(f"{site.root}/releases").listdir()
    assert 1 <= len([r for r in releases if not r.startswith(".")]) <= site.keep


def test_tls_key_is_root_only(host, site: Site) -> None:  # noqa: ANN001
    key = host.file(site.key)
    assert key.exists
    assert key.user == "root"
    assert key.mode in (0o600, 0o640)


# ---------------------------------------------------------------- the staff's usage page
@pytest.fixture(scope="module")
def usage_page(inventory_vars) -> dict[str, str]:  # noqa: ANN001
    """Role usage_page's settings; skips where the inventory turns the page off."""
    from ops import roles

    if not roles.setting(inventory_vars, "usage_page", "usage_page_enabled"):
        pytest.skip("the inventory has no staff usage page (usage_page_enabled: false)")
    return {k: str(roles.setting(inventory_vars, "usage_page", f"usage_page_{k}"))
            for k in ("root", "account", "user")}


@pytest.mark.parametrize("path", ["", "index.html", "usage.json", "usage.png"])
def test_the_staff_usage_page_needs_the_password(host, site: Site, usage_page,  # noqa: ANN001
                                                 path: str) -> None:
    r = get(host, f"https://localhost{site.baseurl}/staff/usage/{path}")
    assert r.status == 401 and "basic" in r.headers.get("www-authenticate", "").lower()


def test_the_staff_usage_page_is_published(host, usage_page) -> None:  # noqa: ANN001
    for name in ("index.html", "usage.png", "usage.json"):
        f = host.file(f"{usage_page['root']}/{name}")
        assert f.is_file and f.user == usage_page["account"], name


def test_the_staff_usage_page_keeps_only_a_hash(host, usage_page) -> None:  # noqa: ANN001
    f = host.file("/etc/nginx/course-usage-page.htpasswd")
    assert (f.user, f.group, f.mode) == ("root", "www-data", 0o640)
    user, _, hashed = f.content_string.strip().partition(":")
    assert user == usage_page["user"] and hashed.startswith("$6$")


def test_the_publishing_key_may_only_write_the_page(host, usage_page) -> None:  # noqa: ANN001
    account = host.user(usage_page["account"])
    keys = host.file(f"{account.home}/.ssh/authorized_keys").content_string.splitlines()
    assert len(keys) == 1
    assert keys[0].startswith(f'command="/usr/bin/rrsync -wo {usage_page["root"]}",restrict ')
    assert account.password in ("!", "*", "!*")  # no password login
