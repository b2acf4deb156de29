"""Requested vs granted (``grant_review``): the comparison follows the enforcement's own rules,
and its suggestion, once added to rosey.toml, grants every request."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.rosey.catalog import build_catalog
from bot.rosey.config import STATE_DIR_ENV, load_config
from bot.rosey.grant_review import (
    GrantReview,
    Verdict,
    review_plugin,
    start_notice,
    subject_covers,
    subjects_overlap,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _state_dir_from_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)  # the data directory is <tmp>/.rosey/data/NAME


PLUGIN = """\
from bot.rosey.plugins.permissions import Files, Http, Requests, Storage
from bot.rosey.plugins.plugin_interface import PluginInterface


class Asker(PluginInterface):
    plugin_name = "asker"
    requests = Requests(
{requests}
    )

    async def handle_command(self, event):
        pass
"""


def review(tmp_path: Path, requests: str, toml: str = "") -> GrantReview:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "asker.py").write_text(PLUGIN.format(requests=textwrap.indent(requests, " " * 8)))
    config_file = tmp_path / "rosey.toml"
    config_file.write_text(
        '[rosey]\nplugin_dirs = ["plugins"]\nentry_points = false\n' + textwrap.dedent(toml), encoding="utf-8"
    )
    config = load_config(config_file)
    catalog = build_catalog(config)
    (spec,) = [s for s in catalog.specs if s.name == "asker"]
    return review_plugin(config, catalog.configs["asker"], spec, catalog.module_files.get("asker"))


def rows(result: GrantReview) -> list[tuple[str, str | None, str | None, Verdict]]:
    return [(i.kind, i.requested, i.granted, i.verdict) for i in result.items]


def test_paths_follow_the_sandbox(tmp_path: Path) -> None:
    shared, out, extra = tmp_path / "shared", tmp_path / "out", tmp_path / "extra"
    for directory in (shared, out, extra):
        directory.mkdir()
    result = review(
        tmp_path,
        f'read_paths=["{shared}/a.txt", "{out}/b", "{tmp_path}/plugins/data.json", "{tmp_path}/secret"],\n'
        f'write_paths=["{out}/c", "{tmp_path}/.rosey/data/asker/x"],',
        '[plugins.asker]\nread_paths = ["shared", "extra"]\nwrite_paths = ["out"]\n',
    )
    assert rows(result) == [
        ("read_paths", f"{shared}/a.txt", f"read_paths {shared}", Verdict.GRANTED),
        ("read_paths", f"{out}/b", f"write_paths {out}", Verdict.GRANTED),  # a write grant reads
        ("read_paths", f"{tmp_path}/plugins/data.json", "default: its own directory", Verdict.GRANTED),
        ("read_paths", f"{tmp_path}/secret", None, Verdict.NOT_GRANTED),
        ("write_paths", f"{out}/c", f"write_paths {out}", Verdict.GRANTED),
        ("write_paths", f"{tmp_path}/.rosey/data/asker/x", "default: its data directory", Verdict.GRANTED),
        ("read_paths", None, str(extra), Verdict.NOT_REQUESTED),
    ]
    assert [i.describe() for i in result.not_granted] == [f"read_paths {tmp_path}/secret"]
    assert not result.complete


def test_http_rules_cover_prefixes_and_methods(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        'http=[Http("api.example.org", reason="data"),\n'
        '      Http("https://x.org/v1/items", methods=["GET", "POST"]),\n'
        '      Http("https://y.org/")],',
        """
        [plugins.asker.http]
        allow = [{ url = "https://api.example.org/" }, { url = "https://x.org/v1/" },
                 { url = "https://unused.org/" }]
        """,
    )
    assert rows(result) == [
        ("http", "GET https://api.example.org/ (data)", "http https://api.example.org/", Verdict.GRANTED),
        (
            "http",
            "GET/POST https://x.org/v1/items",
            "partly: https://x.org/v1/ allows GET",
            Verdict.NOT_GRANTED,
        ),
        ("http", "GET https://y.org/", None, Verdict.NOT_GRANTED),
        ("http", None, "http https://unused.org/", Verdict.NOT_REQUESTED),
    ]


def test_quotas_subjects_env_network_processes(tmp_path: Path) -> None:
    result = review(
        tmp_path,
        "storage=Storage(max_bytes=100_000_000, max_keys=10),\n"
        "files=Files(max_pending=20),\n"
        'events=["rosey.events.message", "rosey.commands.other.execute"],\n'
        'publish=["rosey.plugins.asker.done", "rosey.chat.*.send", "rosey.services.files.irc.fetch"],\n'
        'env=["TZ", "HOME"], network=["API.example.org:443"], max_processes=2,',
        """
        [plugins.asker]
        env = ["TZ"]
        network = ["api.example.org:443"]
        publish = ["rosey.chat.irc.send"]
        max_processes = 1
        [plugins.asker.files]
        max_pending = 32
        """,
    )
    not_granted = [i.describe() for i in result.not_granted]
    assert not_granted == [
        "storage max_bytes 100000000",
        "events rosey.commands.other.execute",
        "publish rosey.chat.*.send",
        "publish rosey.services.files.irc.fetch",  # denied to every plugin: never suggested
        "env HOME",
        "max_processes 2",
    ]
    granted = {(i.kind, i.requested): i.granted for i in result.items if i.verdict is Verdict.GRANTED}
    assert granted[("storage", "max_keys 10")] == "max_keys 10000 (default)"
    assert granted[("files", "max_pending 20")] == "max_pending 32"
    assert granted[("events", "rosey.events.message")] == "default: rosey.events.>"
    assert granted[("publish", "rosey.plugins.asker.done")] == "default: rosey.plugins.asker.>"
    assert granted[("network", "API.example.org:443")] == "network api.example.org:443"
    assert "rosey.services.files.irc.fetch" not in result.suggestion


def test_the_suggestion_grants_every_request(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    requests = (
        f'read_paths=["{tmp_path}/data"], network=["example.org:443"], env=["TZ"],\n'
        'http=[Http("https://api.example.org/v2/", methods=["GET", "POST"])],\n'
        "storage=Storage(max_bytes=50_000_000, max_value_bytes=100_000), files=Files(expire_seconds=7200),\n"
        'publish=["rosey.chat.*.send"], events=["rosey.plugins.other.>"], max_processes=1,'
    )
    first = review(tmp_path, requests)
    assert len(first.not_granted) == 10 and first.suggestion.startswith("# A suggestion")
    second = review(tmp_path, requests, first.suggestion)
    assert second.complete, [i.describe() for i in second.not_granted]
    assert second.suggestion == ""


def test_a_plugin_that_declares_nothing_lists_its_grants(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "bare.py").write_text(
        "from bot.rosey.plugins.plugin_interface import PluginInterface\n"
        "class Bare(PluginInterface):\n    plugin_name = 'bare'\n"
        "    async def handle_command(self, e): pass\n"
    )
    (tmp_path / "rosey.toml").write_text(
        '[rosey]\nplugin_dirs = ["plugins"]\nentry_points = false\n[plugins.bare]\nnetwork = ["x.org:443"]\n'
    )
    config = load_config(tmp_path / "rosey.toml")
    catalog = build_catalog(config)
    result = review_plugin(config, catalog.configs["bare"], catalog.specs[0])
    assert not result.declared and result.complete
    assert rows(result) == [("network", None, "x.org:443", Verdict.NOT_REQUESTED)]
    assert start_notice(result) == ((), ())


def test_the_start_notice_is_one_line(tmp_path: Path) -> None:
    result = review(tmp_path, 'env=["HOME"], read_paths=[NOT_LITERAL],')
    not_granted, lines = start_notice(result)
    assert not_granted == ()  # the declaration could not be read: nothing is known to be missing
    assert len(lines) == 1 and "cannot all be read" in lines[0] and "line 8" in lines[0]
    result = review(tmp_path, 'env=["HOME", "LANG"],')
    not_granted, lines = start_notice(result)
    assert not_granted == ("env HOME", "env LANG")
    assert len(lines) == 1 and "env HOME; env LANG" in lines[0] and "rosey plugins review asker" in lines[0]


@pytest.mark.parametrize(
    ("pattern", "subject", "covers"),
    [
        ("a.>", "a.b", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.>", "a.>", True),
        ("a.*", "a.>", False),
        ("a.*", "a.b", True),
        ("a.*", "a.*", True),
        ("a.*", "a.b.c", False),
        ("a.b", "a.*", False),
        ("a.b", "a.b", True),
        (">", "x.y", True),
    ],
)
def test_subject_covers(pattern: str, subject: str, covers: bool) -> None:
    assert subject_covers(pattern, subject) is covers


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [("a.*.c", "a.b.>", True), ("a.b", "a.c", False), ("a.>", "a", False), ("a.*", "a.b.c", False)],
)
def test_subjects_overlap(a: str, b: str, overlap: bool) -> None:
    assert subjects_overlap(a, b) is overlap and subjects_overlap(b, a) is overlap


def test_the_status_field_reads_back_tolerantly() -> None:
    from bot.rosey.supervision.status import PluginStatus

    row = {"name": "x", "state": "running", "not_granted": ["env HOME", 3, None, {"a": 1}]}
    assert PluginStatus.from_dict(row).not_granted == ("env HOME",)
    assert PluginStatus.from_dict({**row, "not_granted": "env HOME"}).not_granted == ()
    assert PluginStatus.from_dict({"name": "x", "state": "running"}).not_granted == ()
    assert PluginStatus(name="x", state="running", not_granted=["a"]).to_dict()["not_granted"] == ["a"]  # type: ignore[arg-type]
