"""`ops images prune`'s plan and the pushed-tag history (no host): which tags stay, which go
where, and which tag jobs run by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.errors import InputError, OpsError
from ops.images import prune
from ops.images import registry as reg


def entry(variant: str, tag: str, when: str) -> dict[str, str]:
    return {"variant": variant, "tag": tag, "digest": f"sha256:{tag}", "pushed_at": when}


HISTORY = [entry("cpu", "cpu-a", "2026-01-01T00:00:00+00:00"),
           entry("cpu", "cpu-b", "2026-02-01T00:00:00+00:00"),
           entry("cuda", "cuda-a", "2026-02-15T00:00:00+00:00"),
           entry("cpu", "cpu-c", "2026-03-01T00:00:00+00:00"),
           entry("cpu", "cpu-d", "2026-04-01T00:00:00+00:00")]
CURRENT = {"cpu": "cpu-d", "cuda": "cuda-a"}
HELD = [prune.Held("gpu1", ("cpu-a", "cpu-b", "cpu-c", "cpu-d", "cuda-a"), ("cpu-c", "cpu-d")),
        prune.Held("gpu2", ("cpu-b", "cpu-d", "stray"), ())]


def test_keep_the_newest_per_variant_and_remove_the_rest_everywhere() -> None:
    p = prune.plan(HISTORY, CURRENT, set(), HELD, keep=2)
    assert set(p.keep) == {"cpu-c", "cpu-d", "cuda-a"}
    assert p.remove == {"gpu1": (["cpu-a", "cpu-b"], []), "gpu2": (["cpu-b", "stray"], [])}
    assert [h["tag"] for h in p.history] == ["cuda-a", "cpu-c", "cpu-d"]


def test_a_tag_a_job_uses_is_never_removed() -> None:
    p = prune.plan(HISTORY, CURRENT, {"cpu-a"}, HELD, keep=1)
    assert "cpu-a" in p.keep and "job" in p.keep["cpu-a"]
    assert p.remove["gpu1"] == (["cpu-b", "cpu-c"], ["cpu-c"])
    assert "cpu-a" in [h["tag"] for h in p.history]


def test_the_tag_pushed_last_stays_even_if_older_ones_were_pushed_after() -> None:
    """A re-pushed old tag is newest in the history; the current one still stays."""
    history = [*HISTORY, entry("cpu", "cpu-a", "2026-05-01T00:00:00+00:00")]
    p = prune.plan(history, CURRENT, set(), HELD, keep=1)
    assert {"cpu-a", "cpu-d", "cuda-a"} <= set(p.keep)


def test_nothing_to_prune() -> None:
    held = [prune.Held("gpu1", ("cpu-c", "cpu-d"), ("cpu-d",))]
    assert prune.plan(HISTORY, CURRENT, set(), held, keep=2).empty


def test_keep_must_be_positive() -> None:
    with pytest.raises(OpsError):
        prune.plan(HISTORY, CURRENT, set(), HELD, keep=0)


@pytest.mark.parametrize(("comments", "tags"), [
    (["course-image=t1", "course-image=none", "", "(null)"], {"t1", "none"}),
    (["run 4, course-image=torch2.13.0-cpu-py3.11-abc"], {"torch2.13.0-cpu-py3.11-abc"}),
    (["xcourse-image=t2"], set()),
])
def test_tags_in_use_come_from_the_job_comments(comments: list[str], tags: set[str]) -> None:
    assert prune.tags_in_use(comments) == tags


def test_untagged_images_are_not_tags() -> None:
    listing = "r/c:t1\nr/c:<none>\nother/x:t2\nr/c:t3\n"
    assert prune._tags(listing, "r/c:") == ("t1", "t3")


def test_the_plan_reads_as_rows() -> None:
    rows = prune.describe(prune.plan(HISTORY, CURRENT, set(), HELD, keep=2))
    assert ("gpu1", "store", "cpu-a", "remove") in rows
    assert ("*", "*", "cpu-d", "keep: pushed last (cpu)") in rows


# ------------------------------------------------------------------------- state


def test_a_push_goes_last_in_the_history() -> None:
    h = reg.record_push(HISTORY, "cpu", "cpu-b", "sha256:cpu-b", "2026-06-01T00:00:00+00:00")
    assert [x["tag"] for x in h] == ["cpu-a", "cuda-a", "cpu-c", "cpu-d", "cpu-b"]


def test_history_of_an_older_state_file_is_its_current_tags(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "images.json").write_text(json.dumps(
        {"version": 1, "variants": {"cpu": {"tag": "t", "digest": "sha256:1"}}}))
    assert reg.load_history(tmp_path) == [
        {"variant": "cpu", "tag": "t", "digest": "sha256:1", "pushed_at": ""}]


def test_a_malformed_history_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "images.json").write_text(json.dumps(
        {"version": 1, "variants": {}, "history": [{"tag": 1}]}))
    with pytest.raises(InputError, match="images.json"):
        reg.load_history(tmp_path)


def test_save_keeps_the_history(tmp_path: Path) -> None:
    reg.save_state(tmp_path, {"cpu": {"tag": "t", "digest": "d"}}, HISTORY)
    reg.save_state(tmp_path, {"cpu": {"tag": "t2", "digest": "d2"}})
    assert reg.load_history(tmp_path) == HISTORY


@pytest.mark.parametrize(("gpus", "variant"), [(True, "cuda"), (False, "cpu")])
def test_the_default_is_the_suited_variant_pushed_last(gpus: bool, variant: str) -> None:
    state = {"cpu": {"tag": "cpu-d", "digest": "d1", "pushed_at": "2026-04-01"},
             "cuda": {"tag": "cuda-a", "digest": "d2", "pushed_at": "2026-02-15"}}
    assert reg.default_image(state, {"cuda"}, gpus)["variant"] == variant


def test_the_default_falls_back_to_any_variant_pushed_last() -> None:
    state = {"cpu": {"tag": "cpu-d", "digest": "d1", "pushed_at": "2026-04-01"}}
    assert reg.default_image(state, {"cuda"}, True) == {"variant": "cpu", "tag": "cpu-d",
                                                        "digest": "d1"}
    assert reg.default_image({}, {"cuda"}, True) is None


def test_playbook_vars_carry_the_store_tags_and_the_default(tmp_path: Path) -> None:
    import ops.cli  # noqa: F401  (registers ops.images.commands)
    from ops.images.commands import image_extra_vars
    from ops.inventory import load

    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("gpu_count: 0\n")
    reg.save_state(tmp_path, {"cpu": {"tag": "cpu-d", "digest": "sha256:cpu-d",
                                      "pushed_at": "2026-04-01T00:00:00+00:00"}}, HISTORY[3:])
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    ctl:\n")
    flag, text = image_extra_vars(load(tmp_path))
    data = json.loads(text)
    assert flag == "-e"
    assert data["course_image_tags"] == [{"variant": "cpu", "tag": "cpu-d",
                                          "digest": "sha256:cpu-d"}]
    assert [t["tag"] for t in data["student_containers_images"]] == ["cpu-c", "cpu-d"]
    assert data["student_containers_default"]["tag"] == "cpu-d"
