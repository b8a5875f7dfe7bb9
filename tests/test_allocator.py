"""`prefdiv._keep_freed_memory`: glibc's malloc keeps freed large buffers for reuse in every
process that imports prefdiv (a speed setting that changes no value: the stages' bit-identity
tests run with it on)."""

import ctypes
import os
import subprocess
import sys

import prefdiv


def test_a_users_glibc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX_", "2")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: (_ for _ in ()).throw(AssertionError("set")))
    prefdiv._keep_freed_memory()  # returns before touching the C library


def test_without_mallopt_nothing_happens(monkeypatch):
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: object())  # a C library without mallopt
    prefdiv._keep_freed_memory()


def test_large_buffers_reuse_their_pages():
    """Buffers of 36, 26 and 4 MB (a training step's logits and their gradients at demo scale)
    allocated and freed 30 times: with the setting, their pages are faulted in a few times, not
    every time (Linux with glibc; elsewhere the setting is skipped and so is the check)."""
    if not sys.platform.startswith("linux"):
        return
    probe = (
        "import resource, torch{imp}\n"
        "x = torch.empty(0)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(30):\n"
        "    buffers = [torch.ones(n) for n in (9_000_000, 6_500_000, 1_000_000)]\n"
        "    del buffers\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {
        imp: int(
            subprocess.run(
                [sys.executable, "-c", probe.format(imp=imp)],
                capture_output=True, text=True, check=True, env=env,
            ).stdout
        )
        for imp in ("", ", prefdiv")
    }  # fmt: skip
    assert faults[", prefdiv"] * 3 < faults[""], faults
