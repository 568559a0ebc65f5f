"""What several lab modules use: the students' image store on the GPU servers, waiting
for a condition, and a headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

STORE = "/var/lib/course-containers/store"
JOBS = "/var/lib/course-containers/jobs"
UNREADABLE = (f"find {STORE} -path '{STORE}/overlay/*/diff' -prune -o \\( ! -perm -o+r -o "
              "-type d ! -perm -o+x \\) -print")
READABLE = UNREADABLE.replace("-print", "-exec chmod a+rX {} +")


def wait_for(what: str, predicate, timeout: float = 180, every: float = 1):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def chromium(window: str = "1280,1600") -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Selenium through chromedriver, with a
    profile of its own (removed after), trusting the lab's private CA (these tests only)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for binary in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver "
                        "(scripts/dev installs both)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="ops-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--window-size={window}",
                "--ignore-certificate-errors", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
