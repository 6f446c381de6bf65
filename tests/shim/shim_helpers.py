"""Helpers shared by tests/shim (host) and tests/numa/test_shim.py (VM)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKLOADS = HERE / "workloads.py"
PY = sys.executable

# Applies a seccomp filter that fails one syscall with an errno, then execs.
#   seccomp_deny NR ERRNO -- CMD ARGS...
SECCOMP_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: seccomp_deny NR ERRNO -- CMD...\n"); return 2; }
    unsigned nr = (unsigned)atoi(argv[1]), err = (unsigned)atoi(argv[2]);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("PR_SET_NO_NEW_PRIVS"); return 2; }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) { perror("PR_SET_SECCOMP"); return 2; }
    execvp(argv[4], argv + 4);
    perror("execvp");
    return 127;
}
"""

# vfork from C the way shells and CPython do it; checks exit codes and that
# the parent's stack/locals survive.  Prints the child's and parent's policy.
VFORK_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/syscall.h>
static int pol(void) { int m = -1; unsigned long mask[16] = {0};
    if (syscall(SYS_get_mempolicy, &m, mask, 1025, 0, 0)) return -1; return m * 1000 + (int)mask[0]; }
int main(int argc, char **argv) {
    volatile int marker = 42; int n = argc > 1 ? atoi(argv[1]) : 200;
    for (int i = 0; i < n; i++) {
        pid_t p = vfork();
        if (p == 0) {
            if (i == 0) { char b[64]; int k = snprintf(b, sizeof b, "child %d\n", pol()); write(1, b, k); }
            if (i % 2) execl("/bin/true", "true", (char *)0);
            _exit(marker == 42 ? 3 : 4);
        }
        if (p < 0) { perror("vfork"); return 1; }
        int st; waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != (i % 2 ? 0 : 3)) { printf("bad %d at %d\n", st, i); return 1; }
    }
    printf("parent %d marker %d\n", pol(), marker);
    return 0;
}
"""

# fork+exit+wait and fork+exec+wait loops for the benchmark.
BENCH_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    int n = atoi(argv[2]); const char *kind = argv[1];
    double t0 = now();
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) { if (kind[0] == 'e') execl(argv[3], argv[3], (char *)0); _exit(0); }
        if (p < 0) { perror("fork"); return 1; }
        waitpid(p, NULL, 0);
    }
    printf("%.9f\n", (now() - t0) / n);
    return 0;
}
"""


# Forks one child per exec form; each child execs `env`, which prints the
# environment it got.  With "self" the root then execs `env` itself.
EXEC_FORMS_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
extern char **environ;
static void child(const char *form) {
    char *argv[] = {"env", NULL};
    char *own[] = {"OWN=1", "LD_PRELOAD=kept-as-given", NULL};
    printf("== %s\n", form); fflush(stdout);
    if (!strcmp(form, "execl")) execl("/usr/bin/env", "env", (char *)0);
    if (!strcmp(form, "execlp")) execlp("env", "env", (char *)0);
    if (!strcmp(form, "execle")) execle("/usr/bin/env", "env", (char *)0, environ);
    if (!strcmp(form, "execv")) execv("/usr/bin/env", argv);
    if (!strcmp(form, "execvp")) execvp("env", argv);
    if (!strcmp(form, "execve")) execve("/usr/bin/env", argv, environ);
    if (!strcmp(form, "execvpe")) execvpe("env", argv, environ);
    if (!strcmp(form, "own-envp")) execve("/usr/bin/env", argv, own);
    _exit(99);
}
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "self")) {
            printf("== self\n"); fflush(stdout);
            execl("/usr/bin/env", "env", (char *)0);
            return 98;
        }
        pid_t p = fork();
        if (p == 0) child(argv[i]);
        int st; waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) return 1;
    }
    return 0;
}
"""


# Prints its pid, then forks 3 children that each execv /bin/true (a root under `numad-py exec`).
FORK_EXEC_C = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    printf("%d\n", (int)getpid());
    fflush(stdout);
    for (int i = 0; i < 3; i++) {
        pid_t p = fork();
        if (p == 0) {
            char *argv[] = {"true", NULL};
            execv("/bin/true", argv);
            _exit(127);
        }
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st))
            return 1;
    }
    return 0;
}
"""


def build_c(out_dir: Path, name: str, source: str) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler")
    src = Path(out_dir) / f"{name}.c"
    exe = Path(out_dir) / name
    src.write_text(source)
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def shim_env(strategy: str, nodes, *, stats: Path | None = None, table: Path | None = None,
             cpus: bool = False, mode: str = "preferred", root_pid: int | None = None,
             extra: dict | None = None) -> dict:
    from numad_py.shim import build_env
    env = build_env(os.environ, strategy=strategy, nodes=nodes, mode=mode, cpus=cpus,
                    root_pid=root_pid, table_path=table, stats_path=stats)
    env.update(extra or {})
    return env


def named_program(directory: Path, name: str, body: str | None = None) -> Path:
    """An executable script called ``name`` (so its comm is ``name``: the kernel takes
    comm from the script's file name, not the interpreter's) that runs ``body``
    with this venv's Python, or by default workloads.py with its arguments."""
    if body is None:
        body = (f"import runpy, sys\nsys.argv[0] = {str(WORKLOADS)!r}\n"
                f"sys.path.insert(0, {str(HERE)!r})\n"
                f"runpy.run_path({str(WORKLOADS)!r}, run_name='__main__')\n")
    path = Path(directory) / name
    path.write_text(f"#!{PY}\n{body}")
    path.chmod(0o755)
    return path


def rules_env(rules_path: Path | None, *, stats: Path | None = None, extra: dict | None = None) -> dict:
    """The shim preloaded WITHOUT any NUMAD_SHIM_* configuration: the rules file decides."""
    from numad_py.shim import shim_path
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMAD_SHIM_")}
    env["LD_PRELOAD"] = str(shim_path())
    if rules_path is not None:
        env["NUMAD_SHIM_RULES"] = str(rules_path)
    if stats is not None:
        env["NUMAD_SHIM_STATS"] = str(stats)
    env.update(extra or {})
    return env


def run_workload(args: list[str], env: dict, *, timeout: float = 300, wrap: list[str] = (),
                 program: Path | None = None) -> list[dict]:
    """Run a workload to completion (as ``program``, see named_program); return its JSON lines."""
    head = [str(program)] if program is not None else [PY, str(WORKLOADS)]
    proc = subprocess.run([*wrap, *head, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"workload {args} failed ({proc.returncode}): {proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def process_table() -> str:
    """Every process with its state and where it sleeps: what a hung test was waiting for."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,stat,wchan:24,pcpu,rss,psr,etime,args"],
                         capture_output=True, text=True)
    return out.stdout + out.stderr


class Running:
    """A workload that waits on stdin: read its records, inspect it, then release it."""

    def __init__(self, args: list[str], env: dict, wrap: list[str] = (), program: Path | None = None):
        head = [str(program)] if program is not None else [PY, str(WORKLOADS)]
        self.proc = subprocess.Popen([*wrap, *head, *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._pending = b""

    def read_until(self, pred, timeout: float = 300) -> list[dict]:
        # Raw reads on the pipe's fd with our own line buffer: select() on a
        # buffered file object misses lines already pulled into its buffer
        # (two children writing at once), and the wait would run to the timeout.
        import select
        import time
        records = []
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                records.append(json.loads(line))
                if pred(records):
                    return records
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"workload gave {records}\n{process_table()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"workload ended early ({self.proc.wait()}): {records}")
            self._pending += chunk

    def finish(self, timeout: float = 120) -> int:
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
