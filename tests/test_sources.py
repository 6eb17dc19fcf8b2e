"""Config sources on real files: a file, a plain directory, a Kubernetes ConfigMap mount.

Every change is made on disk in tmp_path and observed through the source's own
`watch()`; the tests wait for the source's next yield (with a timeout), never for
a fixed time. The ConfigMap tests drive `Kubelet`, which performs the kubelet's
atomic-writer steps in its order (pkg/volume/util/atomic_writer.go).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sources import (
    DirectorySource,
    Documents,
    FileSource,
    Source,
    SourceError,
    digest,
    merge,
    source_for,
)
from gateway.sources.backoff import Backoff
from gateway.sources.etcd import EtcdSource, parse_endpoints, prefix_end
from gateway.sources.merge import MAX_DEPTH
from tests.examples import examples

#: Time the tests give a source to notice one change. Detection takes ~0.1 s here;
#: the margin is for a loaded 2-core machine, not part of any claim.
NOTICE_S = 5.0


class Follower:
    """Runs `source.watch()` in a task and queues what it yields."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.yields: asyncio.Queue[Documents] = asyncio.Queue()
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            async for documents in self.source.watch():
                self.yields.put_nowait(documents)
        finally:
            self.ended.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def next(self, within_s: float = NOTICE_S) -> Documents:
        return await asyncio.wait_for(self.yields.get(), within_s)

    async def until(
        self, accept: Callable[[Documents], bool], within_s: float = NOTICE_S
    ) -> tuple[Documents, list[Documents]]:
        """The first yield `accept` takes, and the ones before it."""
        skipped: list[Documents] = []
        deadline = time.monotonic() + within_s
        while True:
            documents = await self.next(max(0.0, deadline - time.monotonic()))
            if accept(documents):
                return documents, skipped
            skipped.append(documents)


@asynccontextmanager
async def following(source: Source) -> AsyncIterator[Follower]:
    follower = Follower(source)
    follower.start()
    try:
        yield follower
    finally:
        await follower.stop()
        await source.aclose()


async def eventually(check: Callable[[], bool], within_s: float = NOTICE_S) -> None:
    """Poll a condition the code under test offers no event for, with a deadline."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def has(files: Mapping[str, str]) -> Callable[[Documents], bool]:
    return lambda documents: dict(documents.files) == dict(files)


class Kubelet:
    """A ConfigMap volume updated exactly as the kubelet's atomic writer does it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.mkdir(parents=True, exist_ok=True)

    def write(self, payload: Mapping[str, str]) -> None:
        for _ in self.steps(payload):
            pass

    def steps(self, payload: Mapping[str, str]) -> Iterator[str]:
        """Perform one update, yielding the name of each step once it is done."""
        data = self.target / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        old_paths = set(os.listdir(self.target / old)) if old else set()
        # (5) a new timestamped directory
        stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        new = Path(tempfile.mkdtemp(prefix=stamp, dir=self.target))
        new.chmod(0o755)
        # (6) the payload, written into it
        for name, text in payload.items():
            (new / name).write_text(text)
            (new / name).chmod(0o644)
        yield "written"
        # (7) user-visible symlinks for new keys (they dangle until the swap)
        for name in payload:
            if not (self.target / name).is_symlink():
                os.symlink(f"..data/{name}", self.target / name)
        # (8) ..data_tmp -> the new directory
        os.symlink(new.name, self.target / "..data_tmp")
        # (9) renamed over ..data: the atomic step
        os.rename(self.target / "..data_tmp", data)
        yield "swapped"
        # (10) user-visible paths of removed keys
        for name in old_paths - set(payload):
            os.remove(self.target / name)
        # (11) the old timestamped directory
        if old:
            shutil.rmtree(self.target / old)
        yield "cleaned"


def fast(source_type: type, path: Path, **options: object) -> Source:
    """A source with a resync slow enough that a test passing through it would
    show (events must do the work), unless the test sets its own."""
    options.setdefault("resync_s", 60.0)
    source: Source = source_type(path, **options)
    return source


# -- documents, digests, merge ------------------------------------------------------------


def test_documents_are_immutable_and_ordered() -> None:
    documents = Documents.of({"b.yaml": "b: 1", "a.yaml": "a: 1"}, "dir:/x")
    assert list(documents.files) == ["a.yaml", "b.yaml"]
    with pytest.raises(TypeError):
        documents.files["c.yaml"] = "x"  # type: ignore[index]
    assert documents.digest == Documents.of({"a.yaml": "a: 1", "b.yaml": "b: 1"}, "file:/y").digest


names = st.text(alphabet="ab\0/", max_size=3)
texts = st.text(alphabet="ab\0:\n", max_size=4)


@given(st.dictionaries(names, texts, max_size=4), st.dictionaries(names, texts, max_size=4))
def test_digest_is_equal_exactly_when_the_documents_are(
    one: dict[str, str], other: dict[str, str]
) -> None:
    # Small alphabets with the separator byte in them: a digest that joined names
    # and texts with "\0" would collide here ({"a": "\0b\0"} and {"a": "", "b": ""}).
    assert (digest(one) == digest(other)) == (one == other)


@given(st.dictionaries(names, texts, max_size=4), st.lists(st.text(max_size=5), max_size=2))
def test_digest_includes_problems(files: dict[str, str], problems: list[str]) -> None:
    assert (digest(files, problems) == digest(files)) == (not problems)


def test_merge_joins_documents_by_top_level_key() -> None:
    data, problems = merge(
        {"models.yaml": "models:\n  - name: g\n", "server.yml": "server:\n  port: 9\n"}
    )
    assert problems == []
    assert data == {"models": [{"name": "g"}], "server": {"port": 9}}


def test_merge_reports_every_problem_at_once() -> None:
    documents = Documents.of(
        {
            "a.yaml": "models: []\nserver: {port: 1}\n",
            "b.yaml": "models: [1]\ntools: {}\n",
            "c.yaml": "- just\n- a list\n",
            "d.yaml": "server:\n  port: [1,\n",
            "e.yaml": "",
            "f.yaml": "limits: {}\nlimits: {rpm: 1}\n",
        },
        "dir:/etc/seawall",
        problems=["(documents): the source said so"],
    )
    data, problems = merge(documents)
    assert problems[0] == "(documents): the source said so"
    assert "b.yaml: models: already set by a.yaml" in problems
    assert any(p.startswith("c.yaml: (top level): must be a YAML mapping") for p in problems)
    syntax = [p for p in problems if p.startswith("d.yaml:")]
    assert len(syntax) == 1 and "line 3" in syntax[0] and "YAML syntax error" in syntax[0]
    assert any(p.startswith("e.yaml: (top level): the document is empty") for p in problems)
    assert any(p.startswith("f.yaml: line 2: duplicate key 'limits'") for p in problems)
    assert len(problems) == 6
    # What could be merged still is: the loader shows it, but must refuse it.
    assert data["tools"] == {} and data["server"] == {"port": 1}


def test_merge_refuses_alias_bombs_loops_and_deep_nesting() -> None:
    lol = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(8):
        name, below = chr(ord("b") + level), chr(ord("a") + level)
        lol += f"{name}: &{name} [{', '.join(['*' + below] * 9)}]\n"
    assert len(lol) < 1000  # a billion nodes from under a kilobyte
    _, problems = merge({"bomb.yaml": lol})
    assert len(problems) == 1 and "expands to more than" in problems[0]
    _, problems = merge({"loop.yaml": "a: &a [1, *a]\n"})
    assert problems == [
        "loop.yaml: line 1, column 4: refused: an alias refers to a node that contains it"
    ]
    _, problems = merge({"deep.yaml": "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)})
    assert len(problems) == 1 and f"nested more than {MAX_DEPTH} levels" in problems[0]
    _, problems = merge({"deeper.yaml": "[" * 100_000})
    assert len(problems) == 1 and "refused" in problems[0]
    # Aliases a config really uses are fine.
    data, problems = merge({"ok.yaml": "base: &b {x: 1}\nuse: {<<: *b, y: 2}\nagain: *b\n"})
    assert problems == [] and data["use"] == {"x": 1, "y": 2} and data["again"] == {"x": 1}


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=80), max_size=3))
def test_merge_never_raises(files: dict[str, str]) -> None:
    data, problems = merge(files)
    assert isinstance(data, dict) and isinstance(problems, list)
    for problem in problems:
        assert "\n" not in problem


config_sections = st.dictionaries(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=6),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(alphabet="xyz", min_size=1, max_size=3), children, max_size=3)
        ),
        max_leaves=8,
    ),
    min_size=1,
    max_size=5,
)


@given(config_sections, st.integers(min_value=1, max_value=4))
def test_merge_of_a_split_config_is_the_config(config: dict[str, object], parts: int) -> None:
    keys = sorted(config)
    files = {
        f"part{i}.yaml": yaml.safe_dump({key: config[key] for key in keys[i::parts]})
        for i in range(parts)
        if keys[i::parts]
    }
    assert merge(files) == (config, [])


# -- source_for -----------------------------------------------------------------------------


def test_source_for_reads_the_config_argument(tmp_path: Path) -> None:
    (tmp_path / "seawall.yaml").write_text("{}")
    file = source_for(str(tmp_path / "seawall.yaml"))
    assert isinstance(file, FileSource) and file.origin == f"file:{tmp_path}/seawall.yaml"
    directory = source_for(str(tmp_path))
    assert isinstance(directory, DirectorySource) and directory.origin == f"dir:{tmp_path}"
    assert isinstance(source_for(f"dir:{tmp_path}"), DirectorySource)
    assert isinstance(source_for(f"file:{tmp_path}/seawall.yaml"), FileSource)
    etcd = source_for("etcd://127.0.0.1:2379,[::1]:2380/seawall")
    assert isinstance(etcd, EtcdSource)
    assert etcd.origin == "etcd://127.0.0.1:2379,[::1]:2380/seawall/"
    assert etcd.prefix == "/seawall/"
    assert [e.port for e in etcd.endpoints] == [2379, 2380]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("/no/such/seawall.yaml", "no such file"),
        ("dir:/no/such/dir", "no such directory"),
        ("http://example.com/seawall.yaml", "unknown config source scheme"),
        ("etcd://127.0.0.1:2379", "etcd://HOST:PORT"),
        ("etcd://127.0.0.1/seawall/", "not HOST:PORT"),
        ("etcd://127.0.0.1:99999/seawall/", "not HOST:PORT"),
        ("etcd://127.0.0.1:2379/", "must name a key prefix"),
    ],
)
def test_source_for_refuses_what_names_no_source(spec: str, says: str) -> None:
    with pytest.raises(SourceError, match=says):
        source_for(spec)


def test_etcd_key_ranges() -> None:
    assert prefix_end(b"/seawall/") == b"/seawall0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert parse_endpoints("h:1, [fe80::1]:2")[1].target == "[fe80::1]:2"


@given(st.floats(0.001, 1.0), st.floats(1.0, 30.0), st.integers(1, 30))
def test_backoff_doubles_up_to_its_cap_and_never_below_half(
    initial: float, cap: float, attempts: int
) -> None:
    backoff = Backoff(initial, cap)
    step = initial
    for _ in range(attempts):
        delay = backoff.next()
        assert step / 2 <= delay <= step
        step = min(cap, step * 2)
    backoff.reset()
    assert backoff.next() <= initial


# -- a file -------------------------------------------------------------------------------


async def test_file_change_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("models: []\n")
    async with following(fast(FileSource, path)) as follower:
        first = await follower.next()
        assert dict(first.files) == {"seawall.yaml": "models: []\n"}
        assert first.origin == f"file:{path}" and first.revision is None
        path.write_text("models: [1]\n")  # in place: truncate, write
        await follower.until(has({"seawall.yaml": "models: [1]\n"}))


async def test_file_replaced_by_rename_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("v: 1\n")
    async with following(fast(FileSource, path)) as follower:
        await follower.next()
        for version in range(2, 5):  # the watch survives the inode changing, repeatedly
            swap = tmp_path / ".seawall.yaml.swp"
            swap.write_text(f"v: {version}\n")
            os.replace(swap, path)
            await follower.until(has({"seawall.yaml": f"v: {version}\n"}))


async def test_file_unrelated_changes_cause_no_read(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("v: 1\n")
    source = fast(FileSource, path)
    async with following(source) as follower:
        await follower.next()
        reads = source.stats.reads
        (tmp_path / "other.yaml").write_text("x: 1\n")
        path.write_text("v: 2\n")
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
        assert source.stats.reads == reads + 1


async def test_file_that_is_a_configmap_key_follows_the_swap(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path / "mount")
    kubelet.write({"seawall.yaml": "v: 1\n"})
    async with following(fast(FileSource, tmp_path / "mount" / "seawall.yaml")) as follower:
        await follower.until(has({"seawall.yaml": "v: 1\n"}))
        kubelet.write({"seawall.yaml": "v: 2\n"})
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
    assert not FileSource(tmp_path / "mount" / "seawall.yaml").writable


async def test_file_missing_unreadable_or_oversized_is_a_problem_not_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "seawall.yaml"
    documents = await FileSource(path).read()
    assert documents.files == {}
    assert documents.problems == (f"seawall.yaml: cannot read {path}: no such file",)
    path.write_bytes(b"name: caf\xe9\n")
    assert (await FileSource(path).read()).problems == ("seawall.yaml: not UTF-8 text (byte 9)",)
    path.write_text("x" * 2000)
    source = fast(FileSource, path, max_bytes=1000)
    async with following(source) as follower:
        refused = await follower.next()
        assert refused.files == {}
        assert refused.problems == (
            "(documents): 2000 bytes of documents, over the limit of 1000 bytes",
        )
        assert merge(refused)[1] == list(refused.problems)
        path.write_text("x: 1\n")
        await follower.until(has({"seawall.yaml": "x: 1\n"}))


async def test_file_write_replaces_it_atomically(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("v: 1\n")
    path.chmod(0o600)
    source = fast(FileSource, path)
    assert source.writable
    async with following(source) as follower:
        await follower.next()
        inode = path.stat().st_ino
        await source.write({"seawall.yaml": "v: 2\n"})
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
        assert path.stat().st_ino != inode  # renamed into place, not rewritten
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(os.listdir(tmp_path)) == ["seawall.yaml"]  # no temporary left
    with pytest.raises(SourceError, match="one document"):
        await source.write({"a.yaml": "", "b.yaml": ""})
    with pytest.raises(SourceError, match="over the limit"):
        await FileSource(path, max_bytes=10).write({"seawall.yaml": "x" * 11})
    os.symlink(path, tmp_path / "link.yaml")
    link = FileSource(tmp_path / "link.yaml")
    assert not link.writable
    with pytest.raises(SourceError, match="not writable"):
        await link.write({"link.yaml": "v: 3\n"})


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_dropped_file_events_are_recovered_by_the_resync(
    tmp_path: Path, asynchronous: bool
) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("v: 1\n")
    asked = 0

    def drop() -> bool:
        nonlocal asked
        asked += 1
        return False

    async def drop_later() -> bool:
        await asyncio.sleep(0)
        return drop()

    resync_s = 0.5
    source = FileSource(path, resync_s=resync_s, event_filter=drop_later if asynchronous else drop)
    async with following(source) as follower:
        await follower.next()
        started = time.monotonic()
        path.write_text("v: 2\n")
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
        took = time.monotonic() - started
    assert asked >= 1 and source.stats.dropped_events == asked
    assert source.stats.events == 0
    assert source.stats.repaired == 1
    assert took <= resync_s + 0.5  # the stated bound: one resync period, plus a read


async def test_aclose_ends_the_watch(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text("v: 1\n")
    source = fast(FileSource, path)
    follower = Follower(source)
    follower.start()
    await follower.next()
    await source.aclose()
    await asyncio.wait_for(follower.ended.wait(), NOTICE_S)


# -- a plain directory --------------------------------------------------------------------


async def test_directory_reads_visible_yaml_files_only(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text("models: []\n")
    (tmp_path / "tools.yml").write_text("tools: {}\n")
    (tmp_path / ".models.yaml.swp").write_text("garbage")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.yaml").write_text("nested: 1\n")
    os.symlink(tmp_path / "gone.yaml", tmp_path / "dangling.yaml")
    documents = await DirectorySource(tmp_path).read()
    assert dict(documents.files) == {"models.yaml": "models: []\n", "tools.yml": "tools: {}\n"}
    assert documents.problems == () and documents.origin == f"dir:{tmp_path}"


async def test_directory_file_written_in_two_steps_ends_with_the_last_write(
    tmp_path: Path,
) -> None:
    (tmp_path / "models.yaml").write_text("models: []\n")
    async with following(fast(DirectorySource, tmp_path)) as follower:
        await follower.next()
        fd = os.open(tmp_path / "tools.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"tools:\n")
            # The source reads the half-written file (and may yield it)...
            await follower.until(lambda d: d.files.get("tools.yaml") == "tools:\n")
            # ...and must still read the rest once it is written.
            os.write(fd, b"  t: {}\n")
        finally:
            os.close(fd)
        await follower.until(lambda d: d.files.get("tools.yaml") == "tools:\n  t: {}\n")


async def test_directory_writes_back_to_back_end_with_the_last_one(tmp_path: Path) -> None:
    async with following(fast(DirectorySource, tmp_path)) as follower:
        assert (await follower.next()).files == {}
        final = "".join(f"k{i}: {i}\n" for i in range(50))
        fd = os.open(tmp_path / "a.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for line in final.splitlines(keepends=True):
                os.write(fd, line.encode())
        finally:
            os.close(fd)
        _, before = await follower.until(lambda d: d.files.get("a.yaml") == final)
        assert all(final.startswith(d.files.get("a.yaml", "")) for d in before)


async def test_directory_limits(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / f"{name}.yaml").write_text(f"{name}: 1\n")
    documents = await DirectorySource(tmp_path, max_documents=2).read()
    assert documents.files == {}
    assert documents.problems == ("(documents): 3 documents, over the limit of 2",)
    documents = await DirectorySource(tmp_path, max_bytes=10).read()
    assert documents.problems == ("(documents): 15 bytes of documents, over the limit of 10 bytes",)
    with pytest.raises(SourceError):
        await DirectorySource(tmp_path).write({"a.yaml": "a: 2\n"})


# -- a ConfigMap mount --------------------------------------------------------------------


async def test_configmap_layout_is_read_through_data(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    Kubelet(mount).write({"seawall.yaml": "models: []\n", "tools.yaml": "tools: {}\n"})
    stamped, *entries = sorted(os.listdir(mount))
    assert stamped.startswith("..20") and entries == ["..data", "seawall.yaml", "tools.yaml"]
    assert os.readlink(mount / "..data") == stamped
    assert os.readlink(mount / "seawall.yaml") == "..data/seawall.yaml"
    documents = await DirectorySource(mount).read()
    assert dict(documents.files) == {"seawall.yaml": "models: []\n", "tools.yaml": "tools: {}\n"}


async def test_configmap_swap_is_one_new_version(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    kubelet = Kubelet(mount)
    kubelet.write({"seawall.yaml": "v: 1\n"})
    source = fast(DirectorySource, mount)
    async with following(source) as follower:
        assert dict((await follower.next()).files) == {"seawall.yaml": "v: 1\n"}
        kubelet.write({"seawall.yaml": "v: 2\n"})  # five fs events, one change
        assert dict((await follower.next()).files) == {"seawall.yaml": "v: 2\n"}
        # The next thing yielded is the next change: nothing was yielded twice.
        kubelet.write({"seawall.yaml": "v: 3\n"})
        assert dict((await follower.next()).files) == {"seawall.yaml": "v: 3\n"}


async def test_configmap_events_after_the_swap_read_again_and_yield_nothing(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "mount"
    kubelet = Kubelet(mount)
    kubelet.write({"seawall.yaml": "v: 1\n", "old.yaml": "old: 1\n"})
    source = fast(DirectorySource, mount)
    async with following(source) as follower:
        await follower.next()
        steps = kubelet.steps({"seawall.yaml": "v: 2\n"})
        assert next(steps) == "written"
        assert next(steps) == "swapped"
        assert dict((await follower.next()).files) == {"seawall.yaml": "v: 2\n"}
        after_swap = source.stats.relists.get("event", 0)
        assert next(steps) == "cleaned"  # more events: old symlink, old directory removed
        await eventually(lambda: source.stats.relists.get("event", 0) > after_swap)
        assert follower.yields.empty()  # read again, same digest: no second version


async def test_configmap_key_added_and_removed(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    kubelet = Kubelet(mount)
    kubelet.write({"seawall.yaml": "models: []\n"})
    async with following(fast(DirectorySource, mount)) as follower:
        await follower.next()
        kubelet.write({"seawall.yaml": "models: []\n", "tools.yaml": "tools: {}\n"})
        added, _ = await follower.until(lambda d: "tools.yaml" in d.files)
        assert dict(added.files) == {"seawall.yaml": "models: []\n", "tools.yaml": "tools: {}\n"}
        kubelet.write({"tools.yaml": "tools: {}\n"})
        removed, _ = await follower.until(lambda d: "seawall.yaml" not in d.files)
        assert dict(removed.files) == {"tools.yaml": "tools: {}\n"}
        assert sorted(n for n in os.listdir(mount) if not n.startswith("..")) == ["tools.yaml"]


async def test_configmap_read_is_never_a_mix_of_two_versions(tmp_path: Path) -> None:
    """Reads racing swaps of two keys that always change together."""
    mount = tmp_path / "mount"
    kubelet = Kubelet(mount)
    kubelet.write({"a.yaml": "a: 0\n", "b.yaml": "b: 0\n"})
    source = DirectorySource(mount)
    stop = asyncio.Event()

    swapped = [0]

    def swap_forever() -> int:
        while not stop.is_set():
            swapped[0] += 1
            version = swapped[0]
            kubelet.write({"a.yaml": f"a: {version}\n", "b.yaml": f"b: {version}\n"})
        return swapped[0]

    swapper = asyncio.get_running_loop().run_in_executor(None, swap_forever)
    try:
        seen = set()
        reads = 0
        # At least 200 reads, and until the swapper has really raced them (on a loaded
        # machine the thread may get few turns in 200 reads): bounded either way.
        while (reads < 200 or swapped[0] <= 10 or len(seen) < 2) and reads < 20_000:
            reads += 1
            documents = await source.read()
            if documents.problems:  # swapped under every attempt: allowed, never a mix
                continue
            a, b = documents.files["a.yaml"], documents.files["b.yaml"]
            assert a.split()[1] == b.split()[1], (a, b)
            seen.add(a)
    finally:
        stop.set()
        swaps = await swapper
    assert swaps > 10 and len(seen) > 1  # the race really happened
