"""glibc's malloc holding freed memory (``noisyclean.allocator``): when it is set, when the
user's own choice is left alone, and that it does keep a training step's memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from noisyclean import allocator
from noisyclean.allocator import glibc_version, hold_freed_memory, user_choice


@pytest.mark.parametrize(("environ", "phrase"), [
    ({}, None),
    ({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, None),
    ({"NOISYCLEAN_MALLOC": "default"}, "NOISYCLEAN_MALLOC=default"),
    ({"NOISYCLEAN_MALLOC": " Default "}, "NOISYCLEAN_MALLOC=Default"),
    ({"NOISYCLEAN_MALLOC": "off"}, "NOISYCLEAN_MALLOC=off"),
    ({"NOISYCLEAN_MALLOC": "0"}, "NOISYCLEAN_MALLOC=0"),
    ({"NOISYCLEAN_MALLOC": "held"}, None),
    ({"NOISYCLEAN_MALLOC": " HELD"}, None),
    ({"NOISYCLEAN_MALLOC": ""}, None),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, "MALLOC_TRIM_THRESHOLD_"),
    ({"MALLOC_MMAP_MAX_": "0"}, "MALLOC_MMAP_MAX_"),
    ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX"),
    ({"MALLOC_CHECK_": "3", "MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "GLIBC_TUNABLES"),
    ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2:glibc.malloc.arena_max=2"}, "GLIBC_TUNABLES"),
    ({"GLIBC_TUNABLES": "glibc.cpu.x86_malloc=1"}, None),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "jemalloc in LD_PRELOAD"),
    ({"LD_PRELOAD": "libfaketime.so libtcmalloc_minimal.so.4"}, "tcmalloc in LD_PRELOAD"),
    ({"LD_PRELOAD": "libfaketime.so:/opt/lib/libmimalloc.so"}, "mimalloc in LD_PRELOAD"),
    ({"LD_PRELOAD": "libfaketime.so"}, None),
    # a folder's name is not the library's
    ({"LD_PRELOAD": "/opt/jemalloc-tools/libprofiler-hook.so"}, None),
    ({"LD_PRELOAD": "/home/shoardman/libfoo.so"}, None),
])
def test_the_users_own_allocator_settings_are_recognised(environ: dict[str, str],
                                                        phrase: str | None) -> None:
    assert user_choice(environ) == phrase


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module as in a new process (nothing set yet), for this test only."""
    monkeypatch.setattr(allocator, "_state", "default")


def _no_mallopt(*_args: object) -> None:
    raise AssertionError("mallopt must not be called")


def _without_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment in which the user chose nothing of the allocator's, on glibc."""
    for name in list(os.environ):
        if name.startswith("MALLOC_") or name in ("NOISYCLEAN_MALLOC", "GLIBC_TUNABLES",
                                                  "LD_PRELOAD"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(allocator, "glibc_version", lambda: "2.36")


class FakeMallopt:
    """A C function ``mallopt`` (it takes ``argtypes`` and ``restype``) that answers from
    ``answers`` and records its calls."""

    def __init__(self, answers: list[int]) -> None:
        self.answers: list[int] = answers
        self.calls: list[tuple[int, int]] = []

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answers[len(self.calls) - 1]


class FakeLibc:
    """A C library whose ``mallopt`` is a :class:`FakeMallopt`."""

    def __init__(self, answers: list[int]) -> None:
        self.mallopt = FakeMallopt(answers)

    @property
    def calls(self) -> list[tuple[int, int]]:
        return self.mallopt.calls


def test_both_thresholds_are_set_together(fresh_state: None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _without_choices(monkeypatch)
    libc = FakeLibc([1, 1])
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: libc)
    assert hold_freed_memory().startswith("held (glibc mallopt")
    assert libc.calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20),
                          (allocator.M_TRIM_THRESHOLD, 2**31 - 1)]
    assert hold_freed_memory().startswith("held (")  # once: no second pair of calls
    assert len(libc.calls) == 2


@pytest.mark.parametrize(("answers", "calls", "state"), [
    # the first refused: the second is not asked for, and nothing changed
    ([0], 1, "default (glibc refused mallopt)"),
    # the second refused: the first has changed glibc's behaviour, and the state says so
    ([1, 0], 2, "partial (glibc mallopt: mmap threshold 32 MiB; the trim threshold refused)"),
])
def test_a_refusal_is_recorded_as_it_left_the_allocator(
    fresh_state: None, monkeypatch: pytest.MonkeyPatch, answers: list[int], calls: int,
    state: str,
) -> None:
    _without_choices(monkeypatch)
    libc = FakeLibc(answers)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: libc)
    assert hold_freed_memory() == state
    assert len(libc.calls) == calls


def test_a_c_library_without_mallopt_is_left_alone(fresh_state: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _without_choices(monkeypatch)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: object())
    assert hold_freed_memory() == "default (no mallopt)"


def test_a_users_choice_is_left_alone(fresh_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")
    monkeypatch.setattr(allocator.ctypes, "CDLL", _no_mallopt)
    assert hold_freed_memory() == "default (GLIBC_TUNABLES)"
    assert allocator.malloc_state() == "default (GLIBC_TUNABLES)"


def test_nothing_is_set_without_glibc(fresh_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_choices(monkeypatch)
    monkeypatch.setattr(allocator, "glibc_version", lambda: None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", _no_mallopt)
    assert hold_freed_memory() == "default (not glibc)"


def test_glibc_version_names_this_systems_c_library() -> None:
    version = glibc_version()
    try:  # musl names the variable and refuses it (OSError); Windows has no confstr
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    if sys.platform.startswith("linux") and libc.startswith("glibc "):
        assert version is not None
        assert version.replace(".", "").isdigit()
    else:
        assert version is None


# Twenty training steps of the small CNN in a fresh process, counting the page faults the
# kernel serves during them: memory the allocator gave back and asks for again comes as new
# pages, each a fault.
STEPS = """
import resource
import torch
from noisyclean import hold_freed_memory
from noisyclean.models import build_model

state = hold_freed_memory()
torch.manual_seed(0)
model = build_model("small-cnn", 10, None, 24).to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(64, 3, 32, 32).to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (64,))

def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, state)
"""


def _faults(setting: str) -> tuple[int, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("GLIBC_TUNABLES", "LD_PRELOAD") and not name.startswith("MALLOC_")}
    env.update(NOISYCLEAN_MALLOC=setting, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    faults, state = run.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(faults), state


@pytest.mark.skipif(glibc_version() is None, reason="the settings are glibc's (Linux)")
def test_held_memory_spares_the_page_faults_of_training_steps() -> None:
    default, default_state = _faults("default")
    held, held_state = _faults("held")
    assert default_state == "default (NOISYCLEAN_MALLOC=default)"
    assert held_state.startswith("held (glibc mallopt")
    if default < 20 * 100:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
        mode = thp.read_text().strip() if thp.is_file() else "unknown"
        pytest.skip(f"glibc's defaults took only {default} page faults in 20 steps here "
                    f"(transparent huge pages: {mode}): nothing to spare")
    # measured here: 68,000-98,000 faults in 20 steps by default, 1-3,842 held (some
    # steps still take a few new 3 MiB blocks, as the heap grows to its peak)
    assert held < default / 5, (held, default)


def test_the_python_api_leaves_the_allocator_alone(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``noisyclean.scan`` runs in the caller's process: it does not change its malloc, and
    ``summary.json`` says so (a fresh interpreter, so no CLI test has set it)."""
    root, _ = digits_folder
    out = tmp_path / "out"
    code = (
        "from noisyclean import ScanConfig, scan\n"
        "from noisyclean.allocator import malloc_state\n"
        f"scan(ScanConfig(data={str(root)!r}, out={str(out)!r}, epochs=1, width=8))\n"
        "print(malloc_state())\n"
    )
    env = {name: value for name, value in os.environ.items() if name != "NOISYCLEAN_MALLOC"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "default (hold_freed_memory not called)"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"]["malloc"] == "default (hold_freed_memory not called)"
