"""Declared requests are read from source, literally, and never run (``plugins/declared_requests``).

Whatever a file holds, reading it runs none of it: a top level that would leave a marker file
leaves none. Literals are read; anything else is a problem naming the line, never a guess.
Hostile sizes and types cost the reader little and claim nothing.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bot.rosey.plugins.declared_requests import MAX_ITEMS, MAX_STRING, read_declared_requests
from bot.rosey.plugins.permissions import Files, Http, Requests, Storage
from bot.rosey.plugins.plugin_interface import PluginInterface

pytestmark = pytest.mark.timeout(30)

HEADER = """\
from bot.rosey.plugins.permissions import Files, Http, Requests, Storage
from bot.rosey.plugins.plugin_interface import PluginInterface
"""


def plugin(tmp_path: Path, body: str, *, header: str = HEADER, name: str = "p.py") -> Path:
    path = tmp_path / name
    path.write_text(header + textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_literal_declaration_is_read_whole(tmp_path: Path) -> None:
    path = plugin(
        tmp_path,
        """
        class P(PluginInterface):
            plugin_name = "p"
            requests = Requests(
                read_paths=["/srv/data", "/srv/data/../other"],
                write_paths=("/srv/out",),
                network=["api.example.org:443"],
                http=[
                    Http("api.example.org", reason="  weather\\n data "),
                    Http(url="http://x.org:8080/v1/", methods=["get", "POST"]),
                ],
                storage=Storage(max_bytes=1_000_000, max_keys=None),
                files=Files(max_bytes=10),
                events=["rosey.events.message"],
                publish=["rosey.chat.*.send"],
                env=["TZ"],
                max_processes=2,
            )
        """,
    )
    declaration = read_declared_requests(path, plugin_name="p")
    assert declaration.problems == ()
    assert declaration.line == 6
    requests = declaration.requests
    assert requests is not None
    assert requests.read_paths == (Path("/srv/data"), Path("/srv/other"))
    assert requests.write_paths == (Path("/srv/out"),)
    assert requests.network == ("api.example.org:443",)
    assert [h.describe() for h in requests.http] == [
        "GET https://api.example.org/ (weather data)",
        "GET/POST http://x.org:8080/v1/",
    ]
    assert dict(requests.storage) == {"max_bytes": 1_000_000}
    assert dict(requests.files) == {"max_bytes": 10}
    assert requests.events == ("rosey.events.message",)
    assert requests.publish == ("rosey.chat.*.send",)
    assert requests.env == ("TZ",)
    assert requests.max_processes == 2


def test_no_declaration_is_no_requests_and_no_problem(tmp_path: Path) -> None:
    path = plugin(tmp_path, 'class P(PluginInterface):\n    plugin_name = "p"\n')
    declaration = read_declared_requests(path, plugin_name="p")
    assert (declaration.requests, declaration.problems, declaration.line) == (None, (), None)


def test_aliases_annotations_and_inheritance(tmp_path: Path) -> None:
    path = plugin(
        tmp_path,
        """
        from typing import ClassVar
        from bot.rosey.plugins import permissions as perm
        from bot.rosey.plugins.permissions import Requests as R

        class Base(PluginInterface):
            requests: ClassVar[R] = R(env=["TZ"])

        class P(Base):
            plugin_name = "p"

        class Q(Base):
            plugin_name = "q"
            requests = perm.Requests(env=["LANG"])
        """,
    )
    p = read_declared_requests(path, plugin_name="p").requests
    q = read_declared_requests(path, plugin_name="q").requests
    assert p is not None and p.env == ("TZ",)  # inherited from a base in the same file
    assert q is not None and q.env == ("LANG",)  # its own wins


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("Requests(read_paths=[PATH])", "the name 'PATH'"),
        ('Requests(read_paths=[f"/srv/{x}"])', "an f-string"),
        ('Requests(read_paths=["/a" + "/b"])', "BinOp"),
        ("Requests(read_paths=[p for p in 'ab'])", "ListComp"),
        ("Requests(**OPTIONS)", "**kwargs"),
        ('Requests(read_paths=__import__("os").listdir("/"))', "a call to"),
        ("make_requests()", "a call to the name 'make_requests'"),
        ("REQUESTS", "the name 'REQUESTS'"),
        ("Requests(max_processes=-1)", "UnaryOp"),
        ("Requests(max_processes=True)", "bool values are not accepted"),
        ("Requests(max_processes=2.5)", "float values are not accepted"),
        ('Requests(read_paths=[b"/etc"])', "bytes values are not accepted"),
        ('Requests(read_paths={"/etc"})', "Set"),
        ('Requests(storage={"max_bytes": 1})', "Dict"),
        ("Requests(read_paths=lambda: 1)", "Lambda"),
    ],
)
def test_anything_but_a_literal_is_a_problem_with_its_line(tmp_path: Path, value: str, words: str) -> None:
    path = plugin(tmp_path, f'class P(PluginInterface):\n    plugin_name = "p"\n    requests = {value}\n')
    declaration = read_declared_requests(path, plugin_name="p")
    assert declaration.requests is None
    (problem,) = declaration.problems
    assert problem.startswith("line 5: requests cannot be read without running the plugin"), problem
    assert words in problem, problem


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('Requests(read_paths=["relative/x"])', "read_paths[0]: must be an absolute path"),
        ('Requests(read_paths="/etc")', "read_paths: must be a list of strings"),
        ('Requests(network=["example.org"])', "network[0]: must be 'host:port'"),
        ('Requests(network=["example.org:99999"])', "port in 1..65535"),
        ('Requests(events=["rosey.>.x"])', "events[0]: must be a NATS subject"),
        ('Requests(env=["NOT-A-NAME"])', "env[0]: must be an environment variable name"),
        ('Requests(http=["https://x.org/"])', "http[0]: must be Http(...)"),
        ('Requests(http=[Http("https://u:p@x.org/")])', "http[0].url: user names and passwords"),
        ('Requests(http=[Http("ftp://x.org/")])', "http[0].url: only http and https"),
        ('Requests(http=[Http("https://x.org/", methods=["BREW"])])', "http[0].methods"),
        ('Requests(http=[Http("https://x.org/", secret="k")])', "http[0].secret: unknown"),
        ("Requests(storage=Storage(max_bytes=0))", "storage.max_bytes: must be a positive whole number"),
        ("Requests(storage=Storage(max_files=3))", "storage.max_files: unknown"),
        ("Requests(files=Storage(max_bytes=3))", "files: must be Files(...)"),
        ('Requests(wants_root=["yes"])', "wants_root: unknown"),
        ('Requests("positional")', "Requests: takes keyword arguments only"),
    ],
)
def test_a_wrong_value_is_a_problem_and_the_rest_is_kept(tmp_path: Path, value: str, words: str) -> None:
    more = f"{value[:-1]}{', ' if value[-2] != '(' else ''}max_processes=1)"
    body = f'class P(PluginInterface):\n    plugin_name = "p"\n    requests = {more}\n'
    declaration = read_declared_requests(plugin(tmp_path, body), plugin_name="p")
    assert any(words in problem for problem in declaration.problems), declaration.problems
    assert declaration.requests is not None and declaration.requests.max_processes == 1


def test_the_file_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = f"""
    import pathlib
    pathlib.Path({str(marker)!r}).write_text("top level ran")

    def side_effect():
        pathlib.Path({str(marker)!r}).write_text("a call ran")
        return []

    class P(PluginInterface):
        plugin_name = "p"
        pathlib.Path({str(marker)!r}).write_text("class body ran")
        requests = Requests(read_paths=side_effect(), env=[__import__("os").system("touch {marker}")])
    """
    path = plugin(tmp_path, body)
    declaration = read_declared_requests(path, plugin_name="p")
    assert declaration.problems
    assert not marker.exists()
    assert "bot_plugin_p" not in sys.modules and "p" not in sys.modules


def test_hostile_sizes_are_refused_cheaply(tmp_path: Path) -> None:
    long_list = "[" + ", ".join(['"/x"'] * (MAX_ITEMS + 1)) + "]"
    long_text = '"/' + "a" * MAX_STRING + '"'
    nested = "[" * 80 + "]" * 80
    huge_int = "1" + "0" * 4000
    for value, words in (
        (f"Requests(read_paths={long_list})", f"more than {MAX_ITEMS} items"),
        (f"Requests(read_paths=[{long_text}])", f"longer than {MAX_STRING}"),
        (f"Requests(read_paths={nested})", "read_paths[0]: must be a non-empty string"),
        (f"Requests(storage=Storage(max_bytes={huge_int}))", None),  # a big number is just big
    ):
        path = plugin(tmp_path, f'class P(PluginInterface):\n    plugin_name = "p"\n    requests = {value}\n')
        declaration = read_declared_requests(path, plugin_name="p")
        if words is None:
            assert declaration.problems == () and declaration.requests is not None
        else:
            assert any(words in p for p in declaration.problems), declaration.problems


def test_unreadable_files_are_problems_not_exceptions(tmp_path: Path) -> None:
    broken = plugin(tmp_path, "class P(PluginInterface):\n    requests = Requests(\n", name="broken.py")
    assert read_declared_requests(broken).problems[0].startswith("line ")
    deep = tmp_path / "deep.py"
    deep.write_text("requests = " + "(" * 100_000 + ")" * 100_000 + "\n")
    assert read_declared_requests(deep).problems
    nul = tmp_path / "nul.py"
    nul.write_bytes(b"requests = 1\x00\n")
    assert read_declared_requests(nul).problems
    assert read_declared_requests(tmp_path / "missing.py").problems[0].startswith("cannot read")


def test_the_plugin_class_is_the_one_named(tmp_path: Path) -> None:
    body = """
    class A(PluginInterface):
        plugin_name = "a"
        requests = Requests(env=["A"])

    class B(PluginInterface):
        plugin_name = "b"
        requests = Requests(env=["B"])
    """
    path = plugin(tmp_path, body)
    assert read_declared_requests(path, plugin_name="b").requests.env == ("B",)  # type: ignore[union-attr]
    assert read_declared_requests(path, class_name="A").requests.env == ("A",)  # type: ignore[union-attr]
    assert read_declared_requests(path, plugin_name="c").requests is None  # two candidates: no guess


# ------------------------------------------------------------------ the SDK side


def test_the_sdk_classes_check_their_types() -> None:
    ok = Requests(read_paths=["/srv"], http=[Http("x.org", methods=["get"])], storage=Storage(max_keys=3))
    assert ok.http[0].methods == ("GET",)
    for bad in (
        lambda: Requests(read_paths="/srv"),
        lambda: Requests(read_paths=[""]),
        lambda: Requests(http=["https://x.org/"]),  # type: ignore[list-item]
        lambda: Requests(http=Http("x.org")),  # type: ignore[arg-type]
        lambda: Requests(storage={"max_bytes": 1}),  # type: ignore[arg-type]
        lambda: Requests(max_processes=True),
        lambda: Http("x.org", methods=["BREW"]),
        lambda: Storage(max_bytes=0),
        lambda: Files(max_pending=-1),
    ):
        with pytest.raises(TypeError):
            bad()


def test_a_plugin_that_declares_nothing_is_unchanged() -> None:
    assert PluginInterface.requests is None


def test_both_readers_pick_the_class_the_module_runs(tmp_path: Path) -> None:
    """Two classes claim the same plugin name: the one ``run_plugin`` starts is what runs, so both
    static readers (requests here, commands) read that one; without a ``run_plugin`` call, the
    later definition."""
    from bot.rosey.plugins.declared_commands import read_declared_commands

    two = """
        class Old(PluginInterface):
            \"\"\"The old one.\"\"\"
            plugin_name = "p"
            requests = Requests(env=["OLD"])

        class New(PluginInterface):
            \"\"\"The new one.\"\"\"
            plugin_name = "p"
            requests = Requests(env=["NEW"])
        """
    two = textwrap.dedent(two)
    started_old = plugin(tmp_path, two + '\nif __name__ == "__main__":\n    run_plugin(Old)\n', name="a.py")
    later = plugin(tmp_path, two, name="b.py")
    for path, expected in ((started_old, "OLD"), (later, "NEW")):
        requests = read_declared_requests(path, plugin_name="p").requests
        assert requests is not None and requests.env == (expected,), path
        summary = read_declared_commands("p", path).summary
        assert summary == f"The {expected.lower()} one.", path
