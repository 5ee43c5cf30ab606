"""The `*** Begin Patch` format: Codex's conformance vectors, then behaviour the agent relies on."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfleet.runtime.apply_patch import (
    FileChange,
    PatchError,
    UpdateFile,
    apply_patch,
    parse_patch,
    summarize,
)

CONFORMANCE_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "codex-apply-patch"
CONFORMANCE_ENV = "AGENTFLEET_CONFORMANCE_DIR"
REQUIRE_ENV = "AGENTFLEET_REQUIRE_SHARED"
"""Set to 1 (CI does) to make missing vectors a failure; elsewhere (a clone without ../shared) they skip."""


def conformance_dir() -> Path | None:
    configured = os.environ.get(CONFORMANCE_ENV)
    if configured:
        return Path(configured) if Path(configured).is_dir() else None
    return CONFORMANCE_DEFAULT if CONFORMANCE_DEFAULT.is_dir() else None


def require_vectors() -> Path:
    """The vectors' folder; a skip saying where it looked, or a failure when CI requires them."""
    found = conformance_dir()
    if found is not None:
        return found
    where = f"${CONFORMANCE_ENV}={os.environ[CONFORMANCE_ENV]!r}" if os.environ.get(CONFORMANCE_ENV) else ""
    why = (
        f"Codex apply_patch conformance vectors not found: looked in {where or CONFORMANCE_DEFAULT} "
        f"(the project's shared folder; set ${CONFORMANCE_ENV} to a copy of it)"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {why}")
    pytest.skip(why)


def scenarios() -> list[Path | None]:
    found = conformance_dir()
    dirs = sorted(p for p in found.iterdir() if p.is_dir()) if found else []
    return dirs or [None]  # None: one test that skips (or fails under CI) and says where it looked


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (directories as None) with file contents."""
    return {p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def patch(*lines: str) -> str:
    return "\n".join(["*** Begin Patch", *lines, "*** End Patch"]) + "\n"


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda p: p.name if p else "conformance-vectors-missing")
def test_every_codex_conformance_scenario_ends_in_its_expected_tree(scenario: Path | None, tmp_path) -> None:
    if scenario is None:
        require_vectors()
    work = tmp_path / "work"
    if (scenario / "input").is_dir():
        shutil.copytree(scenario / "input", work)
        make_writable(work)  # the vectors are stored read-only
    else:
        work.mkdir()
    with contextlib.suppress(PatchError):  # the vectors judge only the final tree
        apply_patch((scenario / "patch.txt").read_text(encoding="utf-8"), work)
    assert tree(work) == tree(scenario / "expected")


def test_the_conformance_folder_holds_the_scenarios_it_documents() -> None:
    found = require_vectors()
    names = [p.name for p in found.iterdir() if p.is_dir()]
    assert len(names) >= 22
    assert all((found / name / "patch.txt").is_file() and (found / name / "expected").is_dir() for name in names)


# --- errors the model reads ----------------------------------------------------------------------


def test_a_hunk_that_does_not_apply_is_named_with_its_file_number_and_missing_lines(tmp_path) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n")
    text = patch(
        "*** Update File: calc.py",
        "@@ def add(a, b):",
        "-    return a - b",
        "+    return a + b",
        "@@ def sub(a, b):",
        "-    return a * b",
        "+    return a - b",
    )
    with pytest.raises(PatchError) as caught:
        apply_patch(text, tmp_path)
    message = str(caught.value)
    assert "calc.py" in message and "hunk 2" in message
    assert "    return a * b" in message, "quotes the lines it could not find"
    assert (tmp_path / "calc.py").read_text().count("return a - b") == 2, "the file is left as it was"


def test_a_missing_at_at_context_line_is_reported_as_such(tmp_path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(PatchError, match=r"a\.py: hunk 1 .*'@@ def nowhere'"):
        apply_patch(patch("*** Update File: a.py", "@@ def nowhere", "-x = 1", "+x = 2"), tmp_path)


ADD_FIRST = ("*** Add File: new.txt", "+x")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("*** Add File: new.txt\n+x\n*** End Patch", "line 1: a patch must start with '*** Begin Patch'"),
        ("*** Begin Patch\n*** Add File: new.txt\n+x\n", "line 3: a patch must end with '*** End Patch'"),
        (patch(*ADD_FIRST, "*** Update File: a.txt", "@@", "-a", "+b", "garbage"), "line 8: expected a '@@'"),
        (patch(*ADD_FIRST, "*** Copy File: a.txt"), "line 4: '*** Copy File: a.txt' is not a valid"),
        (patch(*ADD_FIRST, "*** Update File: a.txt", "@@", "*** End of File"), "line 6: a hunk needs lines"),
        (patch(*ADD_FIRST, "*** Update File: a.txt"), "line 4: '*** Update File: a.txt' has no hunks"),
        (patch(*ADD_FIRST, "*** Update File: a.txt", "oops"), "line 5: a hunk needs lines"),
        (patch(*ADD_FIRST, "+y", "", "+z"), "line 6: '+z' is not a valid operation header"),
        (patch(), "the patch has no operations"),
        ("", "a patch must start with"),
    ],
)
def test_a_malformed_patch_is_rejected_with_its_line_and_nothing_is_touched(tmp_path, text, fragment) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    with pytest.raises(PatchError) as caught:
        apply_patch(text, tmp_path)
    assert fragment in str(caught.value)
    assert tree(tmp_path) == {"a.txt": b"a\n"}


def test_a_failure_after_earlier_operations_says_which_ones_stayed_applied(tmp_path) -> None:
    with pytest.raises(PatchError) as caught:
        apply_patch(patch("*** Add File: made.txt", "+hi", "*** Delete File: absent.txt"), tmp_path)
    assert "absent.txt" in str(caught.value) and "A made.txt" in str(caught.value)
    assert (tmp_path / "made.txt").read_text() == "hi\n"


# --- paths stay inside the workspace -------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../x.txt", "/etc/passwd", "sub/../../x.txt", "link/owned.txt", "filelink"])
def test_a_path_outside_the_workspace_is_refused_and_nothing_is_touched(tmp_path, escape) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "keep.txt").write_text("keep\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "filelink").symlink_to(outside / "secret.txt")
    before_inside, before_outside = tree(root), tree(outside)
    text = patch("*** Add File: first.txt", "+first", f"*** Update File: {escape}", "@@", "-secret", "+pwned")
    with pytest.raises(PatchError, match="points outside the workspace"):
        apply_patch(text, root)
    assert tree(root) == before_inside and tree(outside) == before_outside


def test_a_move_to_outside_the_workspace_is_refused_before_anything_is_written(tmp_path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    with pytest.raises(PatchError, match="outside the workspace"):
        apply_patch(patch("*** Update File: a.txt", "*** Move to: ../stolen.txt", "@@", "-a", "+b"), root)
    assert tree(tmp_path) == {"ws": None, "ws/a.txt": b"a\n"}


def test_deleting_a_symlink_removes_the_link_not_its_target(tmp_path) -> None:
    (tmp_path / "real.txt").write_text("real\n")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")
    assert apply_patch(patch("*** Delete File: alias.txt"), tmp_path) == [FileChange("delete", "alias.txt")]
    assert tree(tmp_path) == {"real.txt": b"real\n"}


# --- matching ------------------------------------------------------------------------------------


def test_context_matches_despite_trailing_and_surrounding_whitespace(tmp_path) -> None:
    (tmp_path / "a.py").write_text("def f():   \n\tif x:\n        return 1\n")
    text = patch("*** Update File: a.py", "@@", " def f():", "     if x:", "-  return 1", "+        return 2")
    apply_patch(text, tmp_path)
    assert (tmp_path / "a.py").read_text() == "def f():   \n\tif x:\n        return 2\n", "context kept as it was"


def test_typographic_dashes_quotes_and_spaces_match_their_ascii_forms(tmp_path) -> None:
    (tmp_path / "a.md").write_text("a \u2014 b\n\u201cquoted\u201d it\u2019s\nx\u00a0y\n")
    apply_patch(patch("*** Update File: a.md", "@@", " a - b", ' "quoted" it\'s', "-x y", "+done"), tmp_path)
    assert (tmp_path / "a.md").read_text() == "a \u2014 b\n\u201cquoted\u201d it\u2019s\ndone\n"


def test_an_exact_match_wins_over_an_earlier_fuzzy_one(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("value  \nvalue\n")
    apply_patch(patch("*** Update File: a.txt", "@@", "-value", "+changed"), tmp_path)
    assert (tmp_path / "a.txt").read_text() == "value  \nchanged\n"


def test_an_at_at_header_selects_the_occurrence_after_that_line(tmp_path) -> None:
    (tmp_path / "m.py").write_text(
        "def foo(x):\n    return 1\n\n\ndef food():\n    return 1\n\n\ndef bar():\n    return 1\n"
    )
    apply_patch(patch("*** Update File: m.py", "@@ def bar", "-    return 1", "+    return 3"), tmp_path)
    apply_patch(patch("*** Update File: m.py", "@@ def food", "-    return 1", "+    return 2"), tmp_path)
    assert (tmp_path / "m.py").read_text() == (
        "def foo(x):\n    return 1\n\n\ndef food():\n    return 2\n\n\ndef bar():\n    return 3\n"
    )
    apply_patch(patch("*** Update File: m.py", "@@ def foo", "-    return 1", "+    return 0"), tmp_path)
    assert (tmp_path / "m.py").read_text().startswith("def foo(x):\n    return 0\n"), "foo, not food"


def test_several_at_at_headers_narrow_down_nested_context(tmp_path) -> None:
    (tmp_path / "m.py").write_text(
        "class A:\n    def run(self):\n        pass\nclass B:\n    def run(self):\n        pass\n"
    )
    text = patch("*** Update File: m.py", "@@ class B:", "@@     def run(self):", "-        pass", "+        go()")
    apply_patch(text, tmp_path)
    assert (tmp_path / "m.py").read_text() == (
        "class A:\n    def run(self):\n        pass\nclass B:\n    def run(self):\n        go()\n"
    )


def test_a_unified_diff_range_in_the_header_is_ignored(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    apply_patch(patch("*** Update File: a.txt", "@@ -1,2 +1,2 @@", " one", "-two", "+2"), tmp_path)
    assert (tmp_path / "a.txt").read_text() == "one\n2\n"


def test_end_of_file_makes_the_hunk_match_the_last_lines(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("end\nmiddle\nend\n")
    apply_patch(patch("*** Update File: a.txt", "@@", "-end", "+END", "*** End of File"), tmp_path)
    assert (tmp_path / "a.txt").read_text() == "end\nmiddle\nEND\n"
    with pytest.raises(PatchError, match="at the end of the file"):
        apply_patch(patch("*** Update File: a.txt", "@@", "-middle", "+x", "*** End of File"), tmp_path)


def test_a_pure_addition_after_an_at_at_header_goes_right_below_that_line(tmp_path) -> None:
    (tmp_path / "a.py").write_text("import os\n\nx = 1\n")
    apply_patch(patch("*** Update File: a.py", "@@ import os", "+import re"), tmp_path)
    assert (tmp_path / "a.py").read_text() == "import os\nimport re\n\nx = 1\n"


def test_a_blank_line_left_between_hunks_does_not_stop_them_applying(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("a\nb\nc\n")
    apply_patch(patch("*** Update File: a.txt", "@@", "-a", "+A", "", "@@", "-c", "+C", ""), tmp_path)
    assert (tmp_path / "a.txt").read_text() == "A\nb\nC\n"


def test_crlf_files_keep_their_line_endings(tmp_path) -> None:
    (tmp_path / "w.txt").write_bytes(b"one\r\ntwo\r\n")
    apply_patch(patch("*** Update File: w.txt", "@@", " one", "-two", "+2", "+3"), tmp_path)
    assert (tmp_path / "w.txt").read_bytes() == b"one\r\n2\r\n3\r\n"


def test_bytes_that_are_not_utf8_survive_an_edit_elsewhere_in_the_file(tmp_path) -> None:
    (tmp_path / "b.txt").write_bytes(b"caf\xe9\nold\n")
    apply_patch(patch("*** Update File: b.txt", "@@", "-old", "+new"), tmp_path)
    assert (tmp_path / "b.txt").read_bytes() == b"caf\xe9\nnew\n"


# --- operations ----------------------------------------------------------------------------------


def test_move_to_writes_the_new_path_removes_the_old_one_and_is_summarized(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "old.py").write_text("x = 1\n")
    (tmp_path / "src" / "old.py").chmod(0o755)
    changes = apply_patch(
        patch("*** Update File: src/old.py", "*** Move to: pkg/new.py", "@@", "-x = 1", "+x = 2"), tmp_path
    )
    assert changes == [FileChange("update", "src/old.py", "pkg/new.py")]
    assert summarize(changes) == "M src/old.py -> pkg/new.py"
    assert tree(tmp_path) == {"pkg": None, "pkg/new.py": b"x = 2\n", "src": None}
    assert stat.S_IMODE((tmp_path / "pkg" / "new.py").stat().st_mode) == 0o755, "mode carried over"


def test_moving_a_file_onto_itself_keeps_it(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    apply_patch(patch("*** Update File: a.txt", "*** Move to: ./a.txt", "@@", "-a", "+b"), tmp_path)
    assert tree(tmp_path) == {"a.txt": b"b\n"}


def test_on_write_sees_every_file_and_created_directory_and_no_temp_file_is_left(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    seen: list[str] = []
    text = patch("*** Add File: x/y/new.txt", "+n", "*** Update File: a.txt", "@@", "-a", "+b")
    changes = apply_patch(text, tmp_path, on_write=lambda p: seen.append(p.relative_to(tmp_path).as_posix()))
    assert seen == ["x", "x/y", "x/y/new.txt", "a.txt"]
    assert summarize(changes) == "A x/y/new.txt\nM a.txt"
    assert sorted(tree(tmp_path)) == ["a.txt", "x", "x/y", "x/y/new.txt"]


def test_a_heredoc_wrapper_and_surrounding_blank_lines_are_tolerated(tmp_path) -> None:
    text = "\n\napply_patch <<'EOF'\n*** Begin Patch\n*** Add File: h.txt\n+hi\n*** End Patch\nEOF\n"
    assert apply_patch(text, tmp_path) == [FileChange("add", "h.txt")]
    assert (tmp_path / "h.txt").read_text() == "hi\n"


def test_parse_patch_reads_operations_without_touching_the_disk() -> None:
    [op] = parse_patch(patch("*** Update File: a.py", "@@ def f", " x", "-y", "+z", "*** End of File"))
    assert isinstance(op, UpdateFile) and op.path == "a.py" and op.move_to is None
    [chunk] = op.chunks
    assert (chunk.contexts, chunk.old, chunk.new, chunk.at_eof) == (("def f",), ("x", "y"), ("x", "z"), True)


# --- property ------------------------------------------------------------------------------------

LINE = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=12)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=8, unique=True), data=st.data())
def test_replacing_any_one_line_produces_exactly_that_change(tmp_path, lines, data) -> None:
    index = data.draw(st.integers(0, len(lines) - 1), label="index")
    replacement = data.draw(LINE, label="replacement")
    context = [f" {lines[index - 1]}"] if index and data.draw(st.booleans(), label="with context") else []
    target = tmp_path / "f.txt"
    target.write_bytes(("\n".join(lines) + "\n").encode())
    apply_patch(patch("*** Update File: f.txt", "@@", *context, f"-{lines[index]}", f"+{replacement}"), tmp_path)
    expected = [*lines[:index], replacement, *lines[index + 1 :]]
    assert target.read_bytes() == ("\n".join(expected) + "\n").encode()


PIECES = [
    "*** Begin Patch",
    "*** End Patch",
    "*** Update File: a",
    "*** Add File: b",
    "*** Move to: c",
    "*** Delete File: d",
    "*** End of File",
    "@@",
    "@@ x",
    "+a",
    "-a",
    " a",
    "",
    "  ",
    "junk",
]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(PIECES), max_size=12) | st.text().map(lambda t: [t]))
def test_parsing_any_text_either_succeeds_or_raises_patch_error(pieces) -> None:
    with contextlib.suppress(PatchError):
        for op in parse_patch("\n".join(pieces)):
            assert op.path and (not isinstance(op, UpdateFile) or op.chunks)
