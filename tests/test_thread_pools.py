"""The process-wide pools: one per name, and a fresh one in a forked child (which inherits no threads)."""

import os

import pytest

from instantmesh_cli import thread_pools


def test_one_pool_per_name():
    pool = thread_pools.shared_pool("test-one", 1)
    assert thread_pools.shared_pool("test-one", 4) is pool
    assert thread_pools.shared_pool("test-other", 1) is not pool
    assert pool.submit(lambda: 7).result() == 7


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool():
    pool = thread_pools.shared_pool("test-fork", 1)
    pool.submit(lambda: None).result()  # the parent's thread exists
    pid = os.fork()
    if pid == 0:  # the child: the parent's pool object would never run anything here
        fresh = thread_pools.shared_pool("test-fork", 1)
        os._exit(0 if fresh is not pool and fresh.submit(lambda: 7).result(timeout=10) == 7 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
