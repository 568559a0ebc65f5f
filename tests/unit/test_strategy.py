"""ansible-playbook runs with Mitogen's strategy unless the environment says otherwise."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import pytest

from ops import machines


def test_mitogen_linear_is_the_default_and_its_plugin_exists() -> None:
    env = machines.strategy_env({})
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    (plugins,) = env["ANSIBLE_STRATEGY_PLUGINS"].split(":")
    assert (Path(plugins) / "mitogen_linear.py").is_file()


def test_a_strategy_in_the_environment_wins() -> None:
    assert machines.strategy_env({"ANSIBLE_STRATEGY": "linear"}) == {}


def test_strategy_plugins_already_set_are_kept_first() -> None:
    env = machines.strategy_env({"ANSIBLE_STRATEGY_PLUGINS": "/site/strategies"})
    first, ours = env["ANSIBLE_STRATEGY_PLUGINS"].split(":")
    assert first == "/site/strategies" and ours.endswith("plugins/strategy")


def test_without_mitogen_installed_ansible_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ansible_mitogen" else real(name, *a))
    assert machines.strategy_env({}) == {}


def test_run_playbook_hands_the_strategy_to_ansible(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Proc:
        stdout = io.StringIO("PLAY RECAP ***\nctl : ok=1 changed=0 unreachable=0 failed=0\n")

        def wait(self) -> int:
            return 0

    def start(argv: list[str], **kw: Any) -> Proc:
        seen.update(kw["env"])
        return Proc()

    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    monkeypatch.setattr(machines.run_mod, "start", start)
    code, recap = machines.run_playbook(["ansible-playbook", "site.yml"], quiet=True)
    assert code == 0 and recap["ctl"].ok == 1
    assert seen["ANSIBLE_STRATEGY"] == "mitogen_linear"
    monkeypatch.setenv("ANSIBLE_STRATEGY", "linear")
    machines.run_playbook(["ansible-playbook", "site.yml"], quiet=True)
    assert seen["ANSIBLE_STRATEGY"] == "linear"
