"""A warm checkout catching up with its mirror: the mirror is fetched only when the remote's refs
moved, the checkout copies the mirror's new object files instead of fetching them and its refs are
written as the mirror's, and whatever the earlier agent did to those refs and object folders, the
next task gets the commit's tree, the mirror's refs and nothing of the mirror's own files."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import zlib
from pathlib import Path

import pytest

from agentfleet.agent import mirrors
from agentfleet.names import workspace_id
from agentfleet.testing.repos import commit_files, git
from tests.agent.test_workspace_reuse import FILES, finish, git_processes, prepare
from tests.agent.test_workspace_reuse import traced as traced  # the fixture: every host git's trace2 events

WARM_ALL_BUDGET = 9
"""git processes, children included, of a warm prepare after one new commit upstream: ls-remote
(+ upload-pack), the mirror's fetch (+ upload-pack, pack-objects, unpack-objects, the connectivity
rev-list), checkout, clean. It was 17: the checkout fetched from the mirror (6 of its own), each
fetch started maintenance --auto, and a rev-parse found the commit."""
UNCHANGED_ALL_BUDGET = 4
"""The same with nothing new upstream: ls-remote (+ upload-pack), checkout, clean. It was 17 too."""


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory(FILES, name="project")


def mirror_of(settings, origin: Path) -> Path:
    return settings.mirrors_dir / f"{workspace_id(str(origin))}.git"


def checkout_refs(path: Path) -> dict[str, str]:
    """Every ref of the checkout: its object, and ` -> target` for a symbolic one."""
    listing = git(path, "for-each-ref", "--format=%(refname) %(objectname)%(if)%(symref)%(then) -> %(symref)%(end)")
    return dict(line.split(" ", 1) for line in listing.splitlines())


def expected_refs(mirror: Path) -> dict[str, str]:
    """The refs a fetch from the mirror leaves in a checkout: its branches under origin/, its tags."""
    listing = git(mirror, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")
    return {
        name.replace("refs/heads/", "refs/remotes/origin/") if name.startswith("refs/heads/") else name: value
        for name, value in (line.split(" ") for line in listing.splitlines())
    }


def assert_exactly_the_commit(workspace, commit: str, files: dict[str, str]) -> None:
    checkout = workspace.repos[0]
    assert checkout.base_commit == commit
    for name, text in files.items():
        assert (checkout.path / name).read_text() == text, name
    assert git(checkout.path, "status", "--porcelain", "--ignored=no") == ""
    assert git(checkout.path, "rev-parse", "HEAD") == commit
    assert finish(workspace) == b""


def test_a_warm_prepare_with_nothing_new_upstream_fetches_nothing(origin, settings, traced) -> None:
    finish(prepare(settings, origin))
    traced.unlink()
    second = prepare(settings, origin)
    names = [name for name, _ in git_processes(traced)]
    assert "fetch" not in names and "pack-objects" not in names, names
    assert len(names) <= UNCHANGED_ALL_BUDGET, names
    assert_exactly_the_commit(second, git(origin, "rev-parse", "HEAD"), FILES)


def test_a_warm_prepare_copies_the_new_objects_and_fetches_only_into_the_mirror(origin, settings, traced) -> None:
    finish(prepare(settings, origin))
    new_head = commit_files(origin, {"src/new.txt": "new upstream\n"}, "upstream work")
    git(origin, "tag", "-a", "-m", "a release", "v1")
    traced.unlink()
    second = prepare(settings, origin)
    names = [name for name, _ in git_processes(traced)]
    assert names.count("fetch") == 1 and names.count("pack-objects") == 1, names  # the mirror's, once
    assert len(names) <= WARM_ALL_BUDGET, names
    assert_exactly_the_commit(second, new_head, {**FILES, "src/new.txt": "new upstream\n"})
    path, mirror = second.repos[0].path, mirror_of(settings, origin)
    assert checkout_refs(path) == expected_refs(mirror)
    assert git(path, "rev-parse", "v1^{commit}") == new_head
    inodes = {(p.stat().st_dev, p.stat().st_ino) for p in mirror.rglob("*") if p.is_file()}
    shared = [p for p in (path / ".git").rglob("*") if p.is_file() and (p.stat().st_dev, p.stat().st_ino) in inodes]
    assert shared == [], "the checkout shares files with the mirror"


def test_a_default_branch_moved_upstream_is_followed_without_a_fetch(origin, settings, traced) -> None:
    prepare(settings, origin)
    git(origin, "branch", "other")
    commit_files(origin, {"src/file1.txt": "on main\n"}, "main moves on")
    finish(prepare(settings, origin))  # the mirror has both branches now
    git(origin, "symbolic-ref", "HEAD", "refs/heads/other")
    traced.unlink()
    again = prepare(settings, origin)
    assert "fetch" not in [name for name, _ in git_processes(traced)]
    assert again.repos[0].base_commit == git(origin, "rev-parse", "other")
    assert (again.repos[0].path / "src" / "file1.txt").read_text() == FILES["src/file1.txt"]


@pytest.mark.parametrize("upstream", ["new-commit", "unchanged"])
def test_refs_the_agent_moved_made_or_linked_are_put_back_as_the_mirror_has_them(origin, settings, upstream) -> None:
    first = prepare(settings, origin)
    path = first.repos[0].path
    old = first.repos[0].base_commit
    older = commit_files(origin, {"src/extra.txt": "x\n"}, "an extra commit")
    git(origin, "tag", "t1")
    finish(prepare(settings, origin))
    refs = path / ".git" / "refs"
    (refs / "remotes" / "origin").mkdir(parents=True, exist_ok=True)
    (refs / "remotes" / "origin" / "main").write_text("ref: refs/heads/evil\n")  # a symbolic ref to write through
    (refs / "remotes" / "origin" / "stray").write_text(old + "\n")  # made up
    (refs / "tags" / "t1").write_text(old + "\n")  # moved back
    (refs / "tags" / "v9").write_text("ref: refs/heads/evil\n")
    (refs / "heads" / "mine").write_text(old + "\n")  # a branch of its own: refs are the mirror's, no more
    os.mkfifo(refs / "stash")
    (path / ".git" / "packed-refs").write_text(f"{old} refs/tags/packed\n")
    expected = {**FILES, "src/extra.txt": "x\n"}
    head = older
    if upstream == "new-commit":
        head = commit_files(origin, {"src/new.txt": "new\n"}, "upstream work")
        expected["src/new.txt"] = "new\n"
    second = prepare(settings, origin)
    assert_exactly_the_commit(second, head, expected)
    assert checkout_refs(path) == expected_refs(mirror_of(settings, origin))
    assert not (refs / "heads" / "evil").exists()


def break_pack_folder(objects: Path) -> None:
    for entry in (objects / "pack").iterdir():
        entry.unlink()
    (objects / "pack").rmdir()
    (objects / "pack").write_text("not a folder\n")


def fifo_for_a_fanout_folder(objects: Path) -> None:
    """A FIFO where the next commit's loose objects would go (every fan-out folder the mirror could use)."""
    for n in range(256):
        folder = objects / f"{n:02x}"
        if not folder.exists():
            os.mkfifo(folder)


def fifo_for_packed_refs(objects: Path) -> None:
    packed = objects.parent / "packed-refs"
    packed.unlink(missing_ok=True)
    os.mkfifo(packed)


def refs_folder_is_a_file(objects: Path) -> None:
    refs = objects.parent / "refs"
    shutil.rmtree(refs)
    refs.write_text("not a folder\n")


@pytest.mark.parametrize(
    "damage",
    [
        break_pack_folder,
        fifo_for_a_fanout_folder,
        fifo_for_packed_refs,
        refs_folder_is_a_file,
        lambda objects: os.rename(objects, objects.with_name("gone")),
    ],
    ids=["pack-folder-is-a-file", "fifo-fanout-folders", "fifo-packed-refs", "refs-is-a-file", "no-objects-folder"],
)
def test_a_damaged_object_store_or_refs_file_still_gives_the_next_task_the_commit(origin, settings, damage) -> None:
    first = prepare(settings, origin)
    finish(first)
    new_head = commit_files(origin, {"src/new.txt": "new upstream\n"}, "upstream work")
    damage(first.repos[0].path / ".git" / "objects")
    second = prepare(settings, origin)  # made again from the mirror where the copy could not go in
    assert_exactly_the_commit(second, new_head, {**FILES, "src/new.txt": "new upstream\n"})
    assert checkout_refs(second.repos[0].path) == expected_refs(mirror_of(settings, origin))


def test_a_copy_over_the_limit_is_left_to_a_fetch_from_the_mirror(origin, settings, traced, monkeypatch) -> None:
    finish(prepare(settings, origin))
    new_head = commit_files(origin, {"src/new.txt": "new upstream\n"}, "upstream work")
    monkeypatch.setattr(mirrors, "COPY_LIMIT", 0)
    traced.unlink()
    second = prepare(settings, origin)
    assert [name for name, _ in git_processes(traced)].count("fetch") == 2  # the mirror's, then the checkout's
    assert_exactly_the_commit(second, new_head, {**FILES, "src/new.txt": "new upstream\n"})
    assert checkout_refs(second.repos[0].path) == expected_refs(mirror_of(settings, origin))


def test_a_branch_or_tag_named_in_the_task_resolves_as_rev_parse_would(origin, settings) -> None:
    prepare(settings, origin)
    first = git(origin, "rev-parse", "HEAD")
    later = commit_files(origin, {"src/file1.txt": "later\n"}, "later")
    git(origin, "branch", "feature/x", first)
    git(origin, "tag", "-a", "-m", "a tag named as a branch", "feature/x", later)  # rev-parse takes the tag
    git(origin, "tag", "-a", "-m", "a release", "v1", first)
    prepare(settings, origin)
    mirror = mirror_of(settings, origin)
    for ref, commit in [
        (None, later),
        ("main", later),
        ("refs/heads/feature/x", first),
        ("feature/x", later),
        ("v1", first),
        (first[:10], first),
        ("main~1", first),
        ("nope", None),
    ]:
        assert mirrors.resolve_commit(mirror, ref) == commit, ref


def test_the_mirror_is_gc_ed_when_git_would_be_asked_to(origin, settings, traced) -> None:
    prepare(settings, origin)
    commit_files(origin, {"src/new.txt": "new upstream\n"}, "upstream work")
    loose = mirror_of(settings, origin) / "objects" / "17"
    loose.mkdir(exist_ok=True)
    made = 0
    for n in itertools.count():  # real loose blobs whose ids start with 17, as many as gc --auto finds too many
        body = b"blob %d\0" % len(str(n)) + str(n).encode()
        sha = hashlib.sha1(body).hexdigest()
        if sha.startswith("17") and not (loose / sha[2:]).exists():
            (loose / sha[2:]).write_bytes(zlib.compress(body))
            made += 1
        if made > mirrors.GC_LOOSE_IN_17:
            break
    traced.unlink()
    prepare(settings, origin)
    names = [name for name, _ in git_processes(traced)]
    assert "maintenance" in names, names
