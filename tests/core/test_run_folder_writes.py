"""Files in a run folder are replaced whole, also when several processes of one run
write the same file at once (the race that failed a 2-process run in CI)."""

from __future__ import annotations

import multiprocessing

import pytest

from dgm.runs import write_text_atomic


def _write_many(path: str, marker: str, times: int, start) -> None:
    from pathlib import Path

    start.wait()
    for i in range(times):
        write_text_atomic(Path(path), f"{marker} {i}\n" * 200)


@pytest.mark.slow
def test_concurrent_atomic_writes_to_one_file_never_fail_or_mix(tmp_path):
    target = tmp_path / "recipe.toml"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=_write_many, args=(str(target), m, 2000, start))
               for m in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    lines = target.read_text().splitlines()
    assert len(lines) == 200 and len(set(lines)) == 1  # one writer's whole file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.toml"]  # no tmp left
