"""host_memory: restart_with_huge_pages re-executes a command line with glibc's huge-page tunable,
and XLA:CPU's per-call temporary buffer then faults in 2 MiB at a time instead of 4 KiB.

Tunables only act from the start of a process, so the main case runs in fresh interpreters.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxvision.backends.cpu import host_memory

# Restarts itself with the tunable (unless opted out), then calls a program whose temporary buffer
# is one 64 MiB GEMM result (without YNN fusions a dot's output is not fused into its consumer on
# CPU), and prints the temp size, its settings, and the minor faults of each of 10 calls after 3.
_PROGRAM = """
import json, os, sys
from jaxvision.backends.cpu.host_memory import minor_page_faults, restart_with_huge_pages, uses_huge_pages
restart_with_huge_pages()
import jax, jax.numpy as jnp
f = jax.jit(lambda a, b: jnp.sum(jnp.tanh(a @ b)))
a, b = jnp.ones((8192, 32)), jnp.ones((32, 2048))
compiled = f.lower(a, b).compile()
for _ in range(3):
    jax.block_until_ready(compiled(a, b))
faults = []
for _ in range(10):
    before = minor_page_faults()
    jax.block_until_ready(compiled(a, b))
    faults.append(minor_page_faults() - before)
print(json.dumps({"argv": sys.argv[1:], "huge": uses_huge_pages(), "tunables": os.environ.get("GLIBC_TUNABLES"),
                  "temp_bytes": compiled.memory_analysis().temp_size_in_bytes, "faults": faults}))
"""

pytestmark = pytest.mark.cpu_kernels


def _run(**environment: str) -> tuple[dict, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.OPT_OUT_VARIABLE)}
    done = subprocess.run([sys.executable, "-c", _PROGRAM, "an", "argument"], capture_output=True, text=True,
                          timeout=300, env={**base, "JAX_PLATFORMS": "cpu",
                                            "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=", **environment})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.skipif(not host_memory.is_glibc() or host_memory.transparent_huge_pages_mode() in (None, "never"),
                    reason="needs glibc and the kernel's transparent huge pages")
def test_restart_with_huge_pages_removes_most_page_faults():
    default, default_log = _run(**{host_memory.OPT_OUT_VARIABLE: "1"})
    huge, huge_log = _run()
    assert not default["huge"] and "restarting" not in default_log
    assert huge["huge"] and huge["tunables"] == host_memory.HUGE_PAGE_TUNABLE and "restarting with" in huge_log
    assert huge["argv"] == ["an", "argument"]  # the same command line, re-executed
    pages = default["temp_bytes"] / 4096
    assert default["temp_bytes"] >= 64 * 2**20  # the GEMM result, over glibc's largest mmap threshold
    # glibc's defaults: every call maps the buffer afresh and faults in every 4 KiB page of it.
    assert all(faults > 0.9 * pages for faults in default["faults"]), default
    # Huge pages: 2 MiB per fault (32 for the buffer), plus small pages around it (49-561 measured).
    assert max(huge["faults"]) < 0.1 * pages, huge


def test_tunables_already_set_are_kept_and_not_restarted(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0:glibc.malloc.hugetlb=1")
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail(f"re-executed: {args[:2]}"))
    host_memory.restart_with_huge_pages()
    assert host_memory.uses_huge_pages() == host_memory.is_glibc()


def test_restart_appends_to_the_users_tunables(monkeypatch):
    calls = []
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0")
    monkeypatch.delenv(host_memory.OPT_OUT_VARIABLE, raising=False)
    monkeypatch.setattr(host_memory, "is_glibc", lambda: True)
    monkeypatch.setattr(host_memory, "transparent_huge_pages_mode", lambda: "madvise")
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    host_memory.restart_with_huge_pages()
    (path, argv, env), = calls
    assert path == sys.executable and argv[1:] == sys.orig_argv[1:]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.check=0:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("reason", ["not glibc", "huge pages off", "opted out", "no command line"])
def test_no_restart_where_it_cannot_help_or_is_unwanted(monkeypatch, reason):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    if reason == "no command line":
        monkeypatch.setattr(sys, "orig_argv", ["python"])
    monkeypatch.setattr(host_memory, "is_glibc", lambda: reason != "not glibc")
    monkeypatch.setattr(host_memory, "transparent_huge_pages_mode", lambda: "never" if reason == "huge pages off" else "madvise")
    if reason == "opted out":
        monkeypatch.setenv(host_memory.OPT_OUT_VARIABLE, "1")
    else:
        monkeypatch.delenv(host_memory.OPT_OUT_VARIABLE, raising=False)
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail(f"re-executed: {args[:2]}"))
    host_memory.restart_with_huge_pages()


def test_transparent_huge_pages_mode_reads_the_selected_mode(monkeypatch, tmp_path):
    mode_file = tmp_path / "enabled"
    mode_file.write_text("always [madvise] never\n")
    monkeypatch.setattr(host_memory, "_THP_MODE_FILE", str(mode_file))
    assert host_memory.transparent_huge_pages_mode() == "madvise"
    monkeypatch.setattr(host_memory, "_THP_MODE_FILE", str(tmp_path / "missing"))
    assert host_memory.transparent_huge_pages_mode() is None


def test_minor_page_faults_counts_touching_new_memory():
    import mmap

    before = host_memory.minor_page_faults()
    with mmap.mmap(-1, 4096 * 256) as fresh:
        for page in range(256):
            fresh[page * 4096] = 1
    assert host_memory.minor_page_faults() - before >= 200
