"""ops/run.py: the one way course-ops runs a tool here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from ops import run
from ops.errors import OpsError, RemoteError


def test_capture_returns_output_and_code_without_checking() -> None:
    done = run.capture([sys.executable, "-c", "import sys; print('out'); "
                        "print('err', file=sys.stderr); sys.exit(3)"], what="a script")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_capture_merges_and_passes_bytes() -> None:
    done = run.capture([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read());"
                        "sys.stderr.write('e')"], what="cat", text=False, input=b"\xff",
                       merge=True)
    assert done.stdout == b"\xffe" and done.stderr is None


def test_a_missing_tool_names_the_package_that_has_it() -> None:
    with pytest.raises(OpsError) as exc:  # a local problem, not an unreachable host
        run.capture(["/nonexistent/rsync", "-a"], what="x", error=RemoteError)
    assert type(exc.value) is OpsError and exc.value.message == "rsync is not installed"
    assert exc.value.hint == "apt-get install rsync"


def test_a_missing_directory_is_not_a_missing_tool(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="no such file or directory"):
        run.capture([sys.executable, "-c", "pass"], what="x", cwd=tmp_path / "gone")


def test_a_tool_reads_nothing_unless_given_input() -> None:
    done = run.capture([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"],
                       what="x")
    assert done.stdout == "''\n"
    with pytest.raises(ValueError):
        run.capture(["true"], what="x", input="a", stdin=0)


def test_a_timeout_is_one_line_naming_the_step() -> None:
    with pytest.raises(OpsError) as exc:
        run.capture([sys.executable, "-c", "import time; time.sleep(5)"],
                    what="gpu1: the listing", timeout=0.2, hint="is it up?")
    assert str(exc.value) == "gpu1: the listing did not finish in 0.2 s; is it up?"


def test_the_logged_command_can_hide_a_script(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ops.run"):
        run.capture([sys.executable, "-c", "pass"], what="x",
                    shown=["python", "-c", "<script>"])
    assert caplog.messages == ["$ python -c '<script>'"]


def test_output_raises_with_the_last_line() -> None:
    with pytest.raises(OpsError, match="failed: second$"):
        run.output([sys.executable, "-c", "import sys; print('first\\nsecond', "
                    "file=sys.stderr); sys.exit(1)"])
    assert run.output([sys.executable, "-c", "print('ok')"]) == "ok\n"


def test_input_is_fed_without_a_stdin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """gevent's subprocess.run (pyinfra patches it in during an accounts run) refuses a
    ``stdin`` key beside ``input``, even one that is None."""
    import subprocess

    seen: dict[str, object] = {}

    def strict_run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if kw.get("input") is not None and "stdin" in kw:
            raise ValueError("stdin and input arguments may not both be used.")
        seen.update(kw)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(run.subprocess, "run", strict_run)
    run.capture(["openssl"], what="x", input="secret")
    assert seen["input"] == "secret" and "stdin" not in seen
    run.capture(["ssh"], what="x")
    assert seen["stdin"] == subprocess.DEVNULL
