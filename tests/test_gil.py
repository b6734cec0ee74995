"""The shorter switch interval while anyone holds gil.responsive(), restored once the last holder leaves."""

import sys
import threading

import pytest

from instantmesh_cli import gil


@pytest.fixture(autouse=True)
def _restore_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_inside_the_interval_is_short_and_after_it_is_what_it_was():
    sys.setswitchinterval(0.005)
    with gil.responsive():
        assert sys.getswitchinterval() == pytest.approx(gil.RESPONSIVE_S)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_overlapping_holders_in_two_threads_restore_only_when_the_last_leaves():
    sys.setswitchinterval(0.004)
    entered, leave = threading.Event(), threading.Event()

    def hold():
        with gil.responsive(0.001):
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(10)
    with gil.responsive():  # the shorter of the two wins while both hold
        assert sys.getswitchinterval() == pytest.approx(gil.RESPONSIVE_S)
    # this thread left first: its leaving must not restore 4 ms under the other holder
    assert sys.getswitchinterval() < 0.004
    leave.set()
    t.join()
    assert sys.getswitchinterval() == pytest.approx(0.004)


def test_an_exception_inside_still_restores():
    sys.setswitchinterval(0.003)
    with pytest.raises(RuntimeError):
        with gil.responsive():
            raise RuntimeError("boom")
    assert sys.getswitchinterval() == pytest.approx(0.003)
