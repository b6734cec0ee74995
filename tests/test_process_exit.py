"""The CLI ends its process without the interpreter's teardown, and loses nothing by it."""

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_exit_code_output_pool_work_and_exit_handlers_all_survive(tmp_path):
    done = _run(f"""
        import atexit, pathlib, sys, time
        from instantmesh_cli.process_exit import exit_promptly
        from instantmesh_cli.thread_pools import shared_pool
        atexit.register(lambda: print("exit handler ran"))
        class Teardown:
            def __del__(self):
                print("teardown ran")  # only if the interpreter took the module apart
        kept = Teardown()
        def slow_write():
            time.sleep(0.3)
            pathlib.Path({str(tmp_path / "pool.txt")!r}).write_text("written")
        shared_pool("test", 1).submit(slow_write)
        sys.stdout.write("data, still buffered")
        sys.stderr.write("a line on stderr")
        exit_promptly(3)
    """)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "data, still bufferedexit handler ran\n"  # and no teardown
    assert done.stderr == "a line on stderr"
    assert (tmp_path / "pool.txt").read_text() == "written"  # the pool finished its work first


def test_a_thread_of_another_library_is_waited_for(tmp_path):
    done = _run(f"""
        import pathlib, threading, time
        from instantmesh_cli.process_exit import exit_promptly
        def late_write():
            time.sleep(0.3)
            pathlib.Path({str(tmp_path / "thread.txt")!r}).write_text("written")
        threading.Thread(target=late_write).start()  # not a daemon: the ordinary exit waits for it
        exit_promptly(0)
    """)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread.txt").read_text() == "written"


def test_the_cli_keeps_its_exit_codes_and_stdout():
    ok = subprocess.run([sys.executable, "-m", "instantmesh_cli", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip().startswith("imesh ")
    bad = subprocess.run([sys.executable, "-m", "instantmesh_cli", "generate", "--no-such-option"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
