"""Run the code blocks of a Markdown page the way a reader would, and compare what they print.

The conventions a page follows (docs/writing-docs.md says the same for authors):

- A ```` ```python ```` block runs. The blocks of one page run in order in one namespace, as a
  reader pasting them one after the other into one session would, with a fresh temporary
  directory as the working directory (so `wf.db` is created there, never in the repository).
  `__name__` is `"__main__"` while a block runs. Each block is written to a file in that
  directory and run from it, so tracebacks and snapshots show real source lines: a second word
  in the fence names the file (```` ```python pipeline.py ````), otherwise it is
  `snippet_L<line>.py`. A block must not raise.
- What a python block prints (its stdout) is shown by a ```` ```text ```` block right after it,
  with nothing but blank lines between. A python block without one must print nothing. A text
  block anywhere else is an error: shown output is always checked.
- A ```` ```console ```` block is a shell transcript: each `$ COMMAND` line runs in bash in the
  page's directory (after the page's python blocks above it), with the `doeff` command of this
  interpreter first on PATH and COLUMNS=80; the lines up to the next `$ ` are what it writes,
  stdout first, then stderr. `$?` is the previous command's exit status, and a command that
  exits non-zero must be followed by `$ echo $?`, so a page never hides a failure.
- A ```` ```sql ```` block runs against `$DOEFF_DSN` (the pages that use PostgreSQL read it too).
- Other blocks (``` sh ```, diagrams, listings without a language) are not run, and may not
  hold `$ ` transcript lines: a transcript is a console block.
- `<!-- not run: REASON -->` on the line before a python, console or sql block (blank lines
  between allowed) skips it. The reason is required; a skipped block cannot have a text block.

Output is compared line by line, exactly, after this normalisation (of both sides unless said):
trailing spaces at line ends and blank lines at the end are dropped (editors strip them);
the page's temporary directory followed by `/` is removed from what ran (paths show relative
to it); hex addresses (`0x` and 6 or more hex digits) compare as `0x…`; date-times
(`2026-11-28 03:00:49Z`, `2026-11-28T03:00:52.864+00:00`) compare by shape, their digits not;
a run's process (`pid 4242 on build-7`, as `doeff runs` names it) compares as `pid … on …`;
a measured duration (`0.20 s`, `12 ms`, with the spaces before it) compares as ` … s` or
` … ms` (`<1 ms` stays).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_LANGS = {"python", "console", "sql"}
OUTPUT_LANGS = {"text"}
# Languages whose blocks would be mistaken for runnable shell if they held `$ ` lines.
SHELL_LOOKALIKES = {"", "sh", "bash", "shell", "zsh"}
# Python under another label would silently never run.
PYTHON_LOOKALIKES = {"py", "py3", "python3", "pycon", "ipython", "pyi"}
BLOCK_SECONDS = 60  # a hung example (a wait that never ends) fails instead of hanging the suite

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
_NOT_RUN_LOOSE = re.compile(r"^\s*<!--\s*not[ _-]?run", re.IGNORECASE)
_HEX = re.compile(r"0x[0-9a-fA-F]{6,}")
_DATETIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?")
_PROCESS = re.compile(r"\bpid \d+ on [\w.-]+")  # a run's process, as `doeff runs` names it
# A measured duration as doeff's tables print it (`0.20 s`, `12 ms`): a step that sleeps 0.2 s
# shows 0.21 s on a loaded machine.
_DURATION = re.compile(r" *(?<![\w.<])\d+(?:\.\d+)? (s|ms)\b")


class PageError(Exception):
    """The page breaks the conventions above (so it cannot be run as intended)."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str  # first word of the info string, lower-case; "" when there is none
    args: tuple[str, ...]  # the other words of the info string
    text: str  # the content, with the fence's indentation removed
    skip_reason: str | None  # from a `<!-- not run: ... -->` marker
    follows_block: bool  # only blank lines since the previous block's closing fence

    @property
    def where(self) -> str:
        """`page.md:LINE`, for messages."""
        return f"{self.page}:{self.line}"


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with their markers; PageError on a stray marker."""
    lines = text.splitlines()
    blocks: list[Block] = []
    errors: list[str] = []
    pending: tuple[int, str] | None = None  # (line, reason) of a marker waiting for its block
    gap_blank = False  # only blank lines since the last closing fence
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _NOT_RUN.match(line)
        opening = _FENCE.match(line)
        if marker:
            if pending:
                errors.append(f"{page}:{pending[0]}: a not-run marker with no block after it")
            reason = marker.group("reason").strip()
            if not reason:
                errors.append(f"{page}:{i + 1}: a not-run marker must say why")
            pending = (i + 1, reason)
            gap_blank = False
        elif _NOT_RUN_LOOSE.match(line):
            errors.append(f"{page}:{i + 1}: write the marker as `<!-- not run: REASON -->`")
        elif opening:
            indent, fence = opening.group("indent"), opening.group("fence")
            words = opening.group("info").split()
            start = i + 1
            body: list[str] = []
            i += 1
            while i < len(lines):
                closing = lines[i].strip()
                if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                    break
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            else:
                errors.append(f"{page}:{start}: the block is never closed")
            blocks.append(Block(
                page=page, line=start, lang=words[0].lower() if words else "",
                args=tuple(words[1:]), text="\n".join(body) + "\n" if body else "",
                skip_reason=pending[1] if pending else None,
                follows_block=bool(blocks) and gap_blank,
            ))
            pending = None
            gap_blank = True
        elif line.strip():
            if pending:
                errors.append(f"{page}:{pending[0]}: a not-run marker must come right before "
                              "its block (only blank lines between)")
                pending = None
            gap_blank = False
        i += 1
    if pending:
        errors.append(f"{page}:{pending[0]}: a not-run marker with no block after it")
    if errors:
        raise PageError("\n".join(errors))
    return blocks


@dataclass
class Step:
    """A block to run, and the output the page shows for it (None: must print nothing)."""

    block: Block
    expected: str | None
    expected_line: int | None


def plan(blocks: list[Block]) -> list[Step]:
    """The blocks to run with their expected output; PageError when the page breaks a rule."""
    steps: list[Step] = []
    errors: list[str] = []
    consumed: set[int] = set()
    for index, block in enumerate(blocks):
        nxt = blocks[index + 1] if index + 1 < len(blocks) else None
        shows = nxt is not None and nxt.lang in OUTPUT_LANGS and nxt.follows_block
        if block.lang in OUTPUT_LANGS and index not in consumed:
            errors.append(f"{block.where}: a text block must show the output of the python "
                          "block right before it")
        if block.skip_reason is not None and block.lang not in RUN_LANGS:
            errors.append(f"{block.where}: a not-run marker on a {block.lang or 'plain'} block, "
                          "which never runs")
        if block.lang in PYTHON_LOOKALIKES:
            errors.append(f"{block.where}: label Python blocks `python`, so that they run")
        if block.lang in SHELL_LOOKALIKES and any(
                ln.startswith("$ ") for ln in block.text.splitlines()):
            errors.append(f"{block.where}: a shell transcript must be a console block")
        if block.lang not in RUN_LANGS:
            continue
        if shows:
            consumed.add(index + 1)
            if block.lang != "python" or block.skip_reason is not None:
                errors.append(f"{nxt.where if nxt else block.where}: output shown for a block "
                              "that does not run as python")
        if block.skip_reason is None:
            steps.append(Step(block, nxt.text if shows and nxt else None,
                              nxt.line if shows and nxt else None))
    if errors:
        raise PageError("\n".join(errors))
    return steps


def normalise(text: str, workdir: Path | None = None) -> list[str]:
    """`text` as compared: see the module docstring."""
    if workdir is not None:
        for prefix in {str(workdir), os.path.realpath(workdir)}:
            text = text.replace(prefix + os.sep, "")
    text = _HEX.sub("0x…", text)
    text = _DATETIME.sub(lambda m: re.sub(r"\d", "0", m.group()), text)
    text = _PROCESS.sub("pid … on …", text)
    text = _DURATION.sub(r" … \1", text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@dataclass
class PageRun:
    """One page being run: its directory, namespace and the failures found so far."""

    name: str
    workdir: Path
    env: Mapping[str, str]
    failures: list[str] = field(default_factory=list)
    module: types.ModuleType = field(default_factory=lambda: types.ModuleType("__main__"))
    files: set[str] = field(default_factory=set)
    status: int = 0  # the last console command's exit status

    def compare(self, step: Step, actual: str, what: str) -> None:
        """Record a failure when `actual` is not the output the page shows for `step`."""
        got = normalise(actual, self.workdir)
        want = normalise(step.expected or "")
        if got == want:
            return
        if step.expected is None:
            self.failures.append(f"{step.block.where}: {what} printed output the page does not "
                                 "show (add a text block after it):\n" + "\n".join(got))
            return
        diff = difflib.unified_diff(want, got, "page", "ran", lineterm="")
        self.failures.append(f"{step.block.where}: {what} printed something else than "
                             f"{self.name}:{step.expected_line} shows:\n" + "\n".join(diff))

    def run_python(self, step: Step) -> bool:
        """Run a python block in the page's namespace; False when it raised."""
        block = step.block
        name = block.args[0] if block.args else f"snippet_L{block.line}.py"
        if name in self.files or os.sep in name:
            self.failures.append(f"{block.where}: file name {name!r} used twice or not plain")
            return False
        self.files.add(name)
        path = self.workdir / name
        path.write_text(block.text)
        out = io.StringIO()
        main = sys.modules["__main__"]
        self.module.__file__ = str(path)
        sys.modules["__main__"] = self.module
        try:
            code = compile(block.text, str(path), "exec")
            with contextlib.redirect_stdout(out), time_limit(BLOCK_SECONDS, block.where):
                exec(code, self.module.__dict__)
        except Exception:
            self.failures.append(f"{block.where}: the block raised (a page's blocks must run as "
                                 f"shown):\n{traceback.format_exc()}")
            return False
        finally:
            sys.modules["__main__"] = main
        self.compare(step, out.getvalue(), "the block")
        return True

    def run_console(self, step: Step, bindir: Path) -> None:
        """Run each `$ COMMAND` of a transcript and compare with the lines after it."""
        block = step.block
        commands: list[tuple[int, str, list[str]]] = []
        for offset, text in enumerate(block.text.splitlines(), start=1):
            if text.startswith("$ "):
                commands.append((block.line + offset, text[2:], []))
            elif commands:
                commands[-1][2].append(text)
            else:
                self.failures.append(f"{block.where}: a transcript starts with `$ COMMAND`")
                return
        env = {**os.environ, **self.env, "COLUMNS": "80",
               "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        for index, (line, command, shown) in enumerate(commands):
            proc = subprocess.run(
                ["bash", "-c", f"(exit {self.status}); {command}"], cwd=self.workdir, env=env,
                capture_output=True, text=True, timeout=BLOCK_SECONDS, stdin=subprocess.DEVNULL)
            self.status = proc.returncode
            sub = Step(Block(block.page, line, "console", (), command, None, False),
                       "\n".join(shown), line)
            self.compare(sub, proc.stdout + proc.stderr, f"`{command}`")
            shown_next = index + 1 < len(commands) and commands[index + 1][1] == "echo $?"
            if proc.returncode != 0 and command != "echo $?" and not shown_next:
                self.failures.append(f"{block.page}:{line}: `{command}` exited with "
                                     f"{proc.returncode}, which the page does not show "
                                     "(follow it with `$ echo $?`)")

    def run_sql(self, step: Step) -> None:
        """Run a sql block's statements on $DOEFF_DSN (results are not shown, so not kept)."""
        import psycopg

        dsn = self.env.get("DOEFF_DSN")
        if dsn is None:
            self.failures.append(f"{step.block.where}: a sql block needs $DOEFF_DSN")
            return
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(step.block.text.encode())
        except psycopg.Error as exc:
            self.failures.append(f"{step.block.where}: the statement failed: {exc}")


@contextlib.contextmanager
def time_limit(seconds: int, where: str) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread if the body runs longer than `seconds`."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{where} still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def doeff_on_path() -> Iterator[Path]:
    """A directory holding this interpreter's `doeff` command (the installed one if any)."""
    installed = Path(sys.executable).parent / "doeff"
    if installed.exists():
        yield installed.parent
        return
    with tempfile.TemporaryDirectory(prefix="doeff-bin-") as bindir:
        shim = Path(bindir) / "doeff"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m doeff "$@"\n')
        shim.chmod(0o755)
        yield Path(bindir)


def run_page(path: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Run every block of the page at `path`; the failures found (empty when the page holds)."""
    name = path.name
    try:
        steps = plan(parse_blocks(path.read_text(), name))
    except PageError as exc:
        return [str(exc)]
    env = dict(env or {})
    workdir = Path(tempfile.mkdtemp(prefix="doeff-docs-"))
    run = PageRun(name, workdir, env)
    cwd = os.getcwd()
    saved_env = {key: os.environ.get(key) for key in env}
    try:
        os.chdir(workdir)
        os.environ.update(env)
        with doeff_on_path() as bindir:
            for step in steps:
                if step.block.lang == "python":
                    if not run.run_python(step):
                        break  # the blocks after it build on what it should have defined
                elif step.block.lang == "console":
                    run.run_console(step, bindir)
                else:
                    run.run_sql(step)
    finally:
        os.chdir(cwd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(workdir, ignore_errors=True)
    return run.failures
