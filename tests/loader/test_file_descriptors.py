"""Batches the training loop keeps cost memory, never file descriptors.

Each test runs in a child process whose open-files limit is lowered to 256
(`resource.setrlimit`, as `ulimit -n 256` would), so running out takes a few
hundred batches rather than the usual 1024 limit's thousands.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = textwrap.dedent(
    """
    import os, resource, warnings
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    import torch
    import fastload

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 4000

        def __getitem__(self, i):
            return {"x": torch.full((16,), i, dtype=torch.int64), "name": f"item-{i}"}

    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    warnings.simplefilter("ignore")  # the loader warns once that the loop holds every slot
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300)


def test_keeping_more_batches_than_the_open_files_limit_allows_costs_no_descriptors():
    # Before: each kept batch past the pool held 2 descriptors (its segment's fd and mmap's
    # duplicate of it), and batch ~128 died with "RuntimeError: received 0 items of ancdata".
    result = _run(
        """
        loader = fastload.DataLoader(Items(), batch_size=4, num_workers=2)
        kept, before = [], None
        for i, batch in enumerate(loader):
            kept.append(batch)
            if i == 20:
                before = open_fds()  # the pool is sized, the loop has kept every slot
            if i == 599:
                break
        assert open_fds() - before <= 2, (before, open_fds())
        for i, batch in enumerate(kept):
            assert torch.equal(batch["x"][:, 0], torch.arange(4 * i, 4 * i + 4)), i
            assert batch["name"] == [f"item-{j}" for j in range(4 * i, 4 * i + 4)]
        del kept, batch
        print("kept 600 batches")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kept 600 batches" in result.stdout


@pytest.mark.parametrize("free_fds", [0, 1])
def test_a_process_with_no_descriptor_left_gets_a_config_error_that_says_how_to_raise_the_limit(free_fds):
    # Before: the raw "RuntimeError: received 0 items of ancdata" (one free) or
    # "OSError: [Errno 24] Too many open files" (none) from inside multiprocessing.
    result = _run(
        f"""
        from fastload.errors import ConfigError

        loader = fastload.DataLoader(Items(), batch_size=4, num_workers=2)
        it = iter(loader)  # the first batches come in segments of their own, each with an fd
        hogs = []
        try:
            while True:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in hogs[len(hogs) - {free_fds}:]:
            os.close(fd)
        try:
            next(it)
        except ConfigError as error:
            print("ConfigError:", error)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert "ConfigError: DataLoader worker" in message and "could not receive the segment's file descriptor" in message
    assert "256" in message and "ulimit -n 65536" in message and "resource.setrlimit" in message
