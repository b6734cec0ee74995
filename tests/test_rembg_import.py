"""Background removal starts fast and keeps off stdout: rembg's sessions without rembg.bg.

Each check runs in a fresh interpreter, the only place where "what does the first
use import" has an answer.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from matting_fixture import tiny_matting  # noqa: F401

# Alpha matting and the libraries only rembg.bg needs; numba compiles pymatting's
# kernels on first import (~90 s in a fresh environment).
HEAVY = ("numba", "pymatting", "rembg.bg", "skimage", "cv2")

FIRST_USE = textwrap.dedent(
    """
    import sys, threading, time
    from PIL import Image
    from instantmesh_cli.images import BackgroundRemover

    stop = threading.Event()
    ticks = 0

    def ticker():
        # Another thread writing stdout while the remover starts: none of it may be lost.
        global ticks
        while not stop.is_set():
            print(f"tick {ticks}")
            ticks += 1
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    time.sleep(0.01)
    img = Image.new("RGB", (96, 64), "white")
    img.paste((200, 30, 30), (20, 16, 60, 48))
    mask = BackgroundRemover().mask(img)
    stop.set()
    thread.join()
    heavy = [n for n in HEAVY if n in sys.modules]
    print("RESULT", ticks, heavy, mask.getextrema())
    """
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_first_background_removal_imports_no_alpha_matting_and_loses_no_stdout(tiny_matting):  # noqa: F811
    proc = run_python(f"HEAVY = {HEAVY!r}\n" + FIRST_USE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    result = lines[-1].split(" ", 2)
    assert result[0] == "RESULT", proc.stdout[-500:]
    ticks = int(result[1])
    assert result[2] == "[] (0, 255)", result[2]  # nothing heavy imported; a real matte
    # every line the other thread printed, in order, and nothing else on stdout
    assert lines[:-1] == [f"tick {i}" for i in range(ticks)]


def test_rembg_imported_later_is_the_whole_package(tiny_matting):  # noqa: F811
    # Code that imports rembg after imesh started a session gets rembg as usual
    # (its __init__ runs then, alpha matting included).
    code = textwrap.dedent(
        """
        import sys
        from instantmesh_cli.images import BackgroundRemover
        BackgroundRemover().session
        assert "rembg.bg" not in sys.modules
        import rembg
        import rembg.sessions
        from rembg import new_session, remove
        assert callable(remove) and rembg.new_session is new_session
        assert new_session is sys.modules["rembg.session_factory"].new_session
        assert "u2net" in rembg.sessions.sessions and rembg.__version__
        assert "rembg.bg" in sys.modules
        print("ok")
        """
    )
    proc = run_python(code)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_missing_onnxruntime_is_one_line_and_leaves_no_half_imported_rembg():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["onnxruntime"] = None
        from instantmesh_cli.errors import ImeshError
        from instantmesh_cli.images import BackgroundRemover
        try:
            BackgroundRemover().session
        except ImeshError as exc:
            print(exc)
        print(sorted(n for n in sys.modules if n == "rembg" or n.startswith("rembg.")))
        """
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    message, leftovers = proc.stdout.splitlines()
    assert "rembg or onnxruntime is not installed" in message and "pip install" in message
    assert leftovers == "[]"


@pytest.mark.parametrize("blocked", ["rembg", "rembg.sessions"])
def test_blocked_rembg(blocked, monkeypatch):
    from instantmesh_cli.errors import ImeshError
    from instantmesh_cli.images import BackgroundRemover

    for name in [n for n in sys.modules if n == "rembg" or n.startswith("rembg.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(ImeshError, match="rembg or onnxruntime is not installed"):
        BackgroundRemover().session
