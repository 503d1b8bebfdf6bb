"""README.md and docs/*.md run as shown: every example runs and prints what its page says.

How a page is run, and how a page shows output, is written at the top of tests/markdown_docs.py
(and for authors in docs/writing-docs.md): python blocks run in order in one namespace per page
in a fresh temporary directory, a ```text block right after one is its exact stdout, ```console
transcripts run the real `doeff` command, and `<!-- not run: REASON -->` is the only way out.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pg_server
import pytest
from markdown_docs import normalise, run_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")
_DOTTED = re.compile(r"`(doeff(?:\.[A-Za-z_]\w*)+)`")


@pytest.fixture
def docs_dsn() -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    server = pg_server.require_server()
    name = f"docs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield make_conninfo(server.dsn, dbname=name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def _repo_files() -> set[Path]:
    return {*ROOT.iterdir(), *(ROOT / "docs").iterdir(), *(ROOT / "tests").iterdir()}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs_and_prints_what_it_shows(page: Path, request: pytest.FixtureRequest) -> None:
    """Every python, console and sql block of the page runs and prints exactly what it shows."""
    env = {}
    if "DOEFF_DSN" in page.read_text():
        env["DOEFF_DSN"] = request.getfixturevalue("docs_dsn")
    before = _repo_files()
    failures = run_page(page, env)
    assert not failures, "\n\n".join(failures)
    assert _repo_files() == before, "running the page left files in the repository"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_links_point_at_files_that_exist(page: Path) -> None:
    """Every relative link of the page names a file of the repository."""
    missing = [target for target in _LINK.findall(page.read_text())
               if not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_dotted_doeff_names_on_the_page_import(page: Path) -> None:
    """Every `doeff.x.y` the page names in code is a module or an attribute of one."""
    broken = []
    for dotted in sorted(set(_DOTTED.findall(page.read_text()))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: object = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                broken.append(dotted)
            break
        else:
            broken.append(dotted)
    assert not broken, f"{page.name} names what doeff does not have: {broken}"


# -- the runner itself: each rule catches what it is for ----------------------------------------


def _run(tmp_path: Path, markdown: str) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(markdown)
    return run_page(page)


def test_output_that_matches_passes_and_output_that_differs_fails(tmp_path: Path) -> None:
    """A text block is compared with the stdout of the python block before it, line by line."""
    good = "```python\nprint(6 * 7)\n```\n\n```text\n42\n```\n"
    assert _run(tmp_path, good) == []
    failures = _run(tmp_path, good.replace("42", "41"))
    assert len(failures) == 1
    assert "page.md:1" in failures[0] and "page.md:5" in failures[0]
    assert "-41" in failures[0] and "+42" in failures[0]


def test_a_block_that_prints_without_a_text_block_fails(tmp_path: Path) -> None:
    """Output a page does not show is a failure, so a page cannot drop what a block prints."""
    failures = _run(tmp_path, "```python\nprint('surprise')\n```\n")
    assert len(failures) == 1 and "surprise" in failures[0]


def test_a_text_block_with_prose_before_it_is_not_output_and_fails(tmp_path: Path) -> None:
    """Shown output must follow its block directly; elsewhere a text block is an error."""
    failures = _run(tmp_path, "```python\nx = 1\n```\n\nSo:\n\n```text\n1\n```\n")
    assert len(failures) == 1 and "page.md:7" in failures[0]


def test_blocks_share_one_namespace_in_a_temporary_directory(tmp_path: Path) -> None:
    """Later blocks see earlier definitions and files; the files stay out of the caller's cwd."""
    page = ("```python\nfrom pathlib import Path\nPath('made.txt').write_text('hi')\nx = 2\n```\n\n"
            "```python\nprint(Path('made.txt').read_text(), x, __name__)\n```\n\n"
            "```text\nhi 2 __main__\n```\n")
    assert _run(tmp_path, page) == []
    assert not (Path.cwd() / "made.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.md"]


def test_a_block_that_raises_fails_and_stops_the_page(tmp_path: Path) -> None:
    """An exception is reported with its traceback, and the blocks after it do not run."""
    page = ("```python\nundefined_helper()\n```\n\n"
            "```python\nprint('after')\n```\n\n```text\nnot what it prints\n```\n")
    failures = _run(tmp_path, page)
    assert len(failures) == 1
    assert "page.md:1" in failures[0] and "NameError" in failures[0]


def test_a_named_block_runs_from_that_file(tmp_path: Path) -> None:
    """`python NAME.py` runs the block from NAME.py, so tracebacks show that file and line."""
    page = ("```python app.py\nimport traceback\n\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
            "    print(traceback.format_exc().splitlines()[1])\n```\n\n"
            "```text\n  File \"app.py\", line 4, in <module>\n```\n")
    assert _run(tmp_path, page) == []


def test_a_not_run_block_is_skipped_only_with_a_reason(tmp_path: Path) -> None:
    """The marker skips the block after it; without a reason, or with no block, it is an error."""
    block = "```python\nraise SystemError\n```\n"
    assert _run(tmp_path, "<!-- not run: needs a real LLM -->\n\n" + block) == []
    assert "must say why" in _run(tmp_path, "<!-- not run: -->\n" + block)[0]
    assert "right before" in _run(tmp_path, "<!-- not run: x -->\nText.\n" + block)[0]
    assert "no block after" in _run(tmp_path, "<!-- not run: x -->\n")[0]
    assert "<!-- not run: REASON -->" in _run(tmp_path, "<!-- notrun x -->\n" + block)[0]
    shown = "<!-- not run: x -->\n" + block + "\n```text\nout\n```\n"
    assert "does not run" in _run(tmp_path, shown)[0]


def test_a_console_transcript_runs_and_must_show_failures(tmp_path: Path) -> None:
    """Each `$ ` command runs in bash; its output is compared and a non-zero exit must be shown."""
    assert _run(tmp_path, "```console\n$ echo hi; echo oops >&2\nhi\noops\n"
                          "$ false\n$ echo $?\n1\n```\n") == []
    wrong = _run(tmp_path, "```console\n$ echo hi\nho\n```\n")
    assert len(wrong) == 1 and "page.md:2" in wrong[0] and "+hi" in wrong[0]
    hidden = _run(tmp_path, "```console\n$ false\n```\n")
    assert len(hidden) == 1 and "exited with 1" in hidden[0]


def test_a_console_transcript_finds_the_doeff_command(tmp_path: Path) -> None:
    """`doeff` in a transcript is this interpreter's doeff command."""
    page = "```console\n$ doeff cache ls missing.db\n" \
           "doeff: missing.db: no such store (no file at missing.db)\n$ echo $?\n2\n```\n"
    assert _run(tmp_path, page) == []


def test_a_transcript_outside_a_console_block_fails(tmp_path: Path) -> None:
    """`$ ` lines in a sh or plain block would never run, so they are refused."""
    failures = _run(tmp_path, "```sh\n$ doeff cache ls wf.db\n```\n")
    assert len(failures) == 1 and "console block" in failures[0]


def test_python_under_another_label_fails(tmp_path: Path) -> None:
    """A `py` or `pycon` block would never run, so it is refused rather than skipped."""
    failures = _run(tmp_path, "```py\nraise SystemError\n```\n")
    assert len(failures) == 1 and "label Python blocks `python`" in failures[0]


def test_normalisation_hides_only_temp_paths_addresses_and_time_digits(tmp_path: Path) -> None:
    """Temp paths, hex addresses and date-time digits do not count; everything else does."""
    ran = f"{tmp_path}/a.py <f at 0x7f5d9190df80> 2026-11-28 03:00:49Z   \n\n"
    assert normalise(ran, tmp_path) == normalise("a.py <f at 0x55aa00112233> 1999-01-01 23:59:59Z")
    assert normalise(ran, tmp_path) != normalise("a.py <f at 0x7f5d9190df80> 2026-11-28T03:00:49Z")
    assert normalise(ran, tmp_path) != normalise("b.py <f at 0x7f5d9190df80> 2026-11-28 03:00:49Z")
    assert normalise("line\n", tmp_path) != normalise("\nline\n")
    # measured durations do not count, their unit does: 0.20 s against 0.21 s, 12 ms against 9 ms
    assert normalise("publish  29 B  0.21 s  12 ms") == normalise("publish  29 B  0.20 s   9 ms")
    assert normalise("0.21 s") != normalise("0.21 ms")
    assert normalise("0.21 s") != normalise("1.21 s0")
    assert normalise("<1 ms") != normalise("<2 ms") and normalise("v1.20 s") != normalise("v1.21 s")


def test_install_instructions_name_this_project_not_the_public_index() -> None:
    """`pip install 'doeff[...]'` fetches an unrelated package of that name from the public index,
    so no page or message tells a user to run it (the lines that warn about it excepted)."""
    wrong = re.compile(r"pip install ['\"]?doeff\[")
    offenders = []
    for path in [*PAGES, *sorted((ROOT / "doeff").rglob("*.py"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if wrong.search(line) and "that fetches the package named" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
