"""The `gpu-runbook` command line: collect, check, list. Bad input gets one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Optional, TextIO

from gpu_runbook import __version__
from gpu_runbook.render import EXIT_UNKNOWN, OutputFormat, exit_code, renderer_for
from gpu_runbook.snapshot import Snapshot

if TYPE_CHECKING:
    from gpu_runbook.redact import Redactor

PROG = "gpu-runbook"
REDACT_HELP = ("replace GPU UUIDs, serials, host names, IP and MAC addresses and user names with stable "
               "placeholders (GPU-UUID-1, HOST-1, ...) in the snapshot and the report")


class UsageError(Exception):
    """Bad usage or input: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # type: ignore[name-defined]  # noqa: F821
        raise UsageError(f"{message} (see {PROG} {self.prog.split()[-1] if ' ' in self.prog else ''} --help)"
                         .replace("  --help", " --help"))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text!r}")
    return value


def _root_dir(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    from gpu_runbook.probes.plan import DEFAULT_DEADLINE_S

    parser = _Parser(prog=PROG, description="Read-only GPU doctor: findings that link to the runbook page that "
                                            "fixes them.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="{collect,check,report,list,explain}")

    def host_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", type=_root_dir, default="/",
                       help="read host files below this directory (a DaemonSet mounts the host at /host); "
                            "commands and NVML then run only with --live")
        p.add_argument("--live", action="store_true", default=None,
                       help="run commands and NVML even when --root is not /")
        p.add_argument("--deadline", type=_positive_float, default=DEFAULT_DEADLINE_S,
                       help=f"seconds the whole collection may take (default {DEFAULT_DEADLINE_S:g})")

    collect = sub.add_parser("collect", help="record what the probes see on this host as a JSON snapshot")
    host_options(collect)
    collect.add_argument("-o", "--output", help="write the snapshot here (default: standard output); "
                                                "an existing file is not overwritten without --force")
    collect.add_argument("--force", action="store_true", help="overwrite the --output file if it exists")
    collect.add_argument("--redact", action="store_true", help=REDACT_HELP)

    check = sub.add_parser("check", help="judge this host (or a snapshot) and print findings")
    host_options(check)
    check.add_argument("--snapshot", help="judge this snapshot file ('-' for stdin) instead of the live host")
    check.add_argument("--format", choices=[f.value for f in OutputFormat], default=OutputFormat.TEXT.value)
    check.add_argument("--only", help="comma-separated check ids to run (see `gpu-runbook list`)")
    check.add_argument("--no-color", action="store_true", help="no colour even on a terminal (NO_COLOR too)")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="text format: list every check that passed or did not apply, not one line for each group")
    check.add_argument("--redact", action="store_true", help=REDACT_HELP)

    explain = sub.add_parser("explain", help="rank the runbook pages for pasted error text (a message, a log, "
                                             "kubectl describe output)")
    explain.add_argument("message", nargs="+", help="the error text ('-' reads it from standard input)")
    explain.add_argument("--json", action="store_true",
                         help="as JSON: page, title, url, matched, score, level (match/likely/possible), why")

    report = sub.add_parser("report", help="judge many nodes' snapshots (files, directories, .json.gz) and "
                                           "print, per finding, how many nodes and which")
    report.add_argument("paths", nargs="+", metavar="PATH", help="a snapshot file or a directory of them")
    report.add_argument("--format", choices=["text", "json", "markdown", "html"], default="text")
    report.add_argument("--jobs", type=int, default=0,
                        help="worker processes (default: one per CPU, at most 8; 1 judges in this process)")

    listing = sub.add_parser("list", help="print the check catalogue")
    listing.add_argument("--json", action="store_true", help="as JSON")
    return parser


def _write_output(path: Optional[str], text: str, force: bool, stdout: TextIO) -> None:
    if not path or path == "-":
        stdout.write(text)
        return
    if os.path.exists(path) and not force:
        raise UsageError(f"{path} exists; not overwriting it (use --force, or another --output)")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gpu-runbook-", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    try:
        # backslashreplace: a lone surrogate (a non-UTF-8 file name or environment value, decoded by
        # Python with surrogateescape) is written as the JSON escape \udcXX instead of failing.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _redactor(enabled: bool) -> Optional[Redactor]:
    if not enabled:
        return None
    from gpu_runbook.redact import process_redactor

    return process_redactor()


def cmd_collect(args: argparse.Namespace, stdout: TextIO) -> int:
    from gpu_runbook.doctor import obtain_snapshot

    with progress_line(sys.stderr, f"collecting from this host (deadline {args.deadline:g} s)"):
        snapshot, _ = obtain_snapshot(None, args.root, args.live, args.deadline)
    redactor = _redactor(args.redact)
    if redactor is not None:
        snapshot = Snapshot(redactor.snapshot(snapshot.data))
    _write_output(args.output, snapshot.to_json() + "\n", args.force, stdout)
    return 0


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):
        return False


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


# A live collection usually takes well under a second; past this a terminal user is told what is going on.
PROGRESS_AFTER_S = 1.0


@contextlib.contextmanager
def progress_line(stream: TextIO, text: str, enabled: bool = True,
                  after: float = PROGRESS_AFTER_S) -> Iterator[None]:
    """Say on `stream` (a terminal only) what is running when it takes longer than `after` seconds.

    The line is written once, from a timer thread, and erased again when the work ends, so the
    report that follows starts on a clean line. Nothing is written to a pipe or a file.
    """
    if not enabled or not _is_tty(stream):
        yield
        return
    lock = threading.Lock()
    shown = []

    def show() -> None:
        with lock:
            if not shown:
                stream.write(f"{PROG}: {text}\u2026")
                stream.flush()
                shown.append(True)

    timer = threading.Timer(after, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            if shown:
                stream.write("\r\033[K")
                stream.flush()
            shown.append(False)


def cmd_check(args: argparse.Namespace, stdout: TextIO) -> int:
    from gpu_runbook.doctor import DoctorError, judge

    if args.snapshot and (args.root != "/" or args.live):
        raise UsageError("--snapshot judges a recorded host; it cannot be combined with --root or --live")
    redactor = _redactor(args.redact)
    details: dict[str, str] = {}
    try:
        with progress_line(sys.stderr, f"collecting from this host (deadline {args.deadline:g} s)",
                           enabled=not args.snapshot):
            findings, source = judge(args.snapshot, args.root, args.only, args.live, args.deadline,
                                     redact=redactor.snapshot if redactor is not None else None, details=details)
    except DoctorError as exc:
        raise UsageError(str(exc)) from None
    fmt = OutputFormat(args.format)
    colour = fmt is OutputFormat.TEXT and not args.no_color and _is_tty(stdout) and not os.environ.get("NO_COLOR")
    meta = {"source": source, "colour": colour, "verbose": args.verbose, "version": __version__,
            "host": details.get("host", ""), "collected_at": details.get("collected_at", ""),
            "engines": details.get("engines", ""), "generated_at": _now()}
    buffer = io.StringIO()
    renderer_for(fmt)(findings, buffer, meta)
    # With --redact the rendered report passes the same mapping once more, for anything a renderer adds.
    stdout.write(redactor.text(buffer.getvalue()) if redactor is not None else buffer.getvalue())
    return exit_code(findings)


# A 10,000-line kernel log or journal excerpt is a few MB; beyond this the oldest part is left out.
MAX_EXPLAIN_BYTES = 16 * 1024 * 1024
LEVEL_WIDTH = 8


def _read_explain_text(args: argparse.Namespace, stderr: TextIO) -> str:
    if args.message != ["-"]:
        return " ".join(args.message)
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8", "replace")
    if len(data) > MAX_EXPLAIN_BYTES:
        stderr.write(f"{PROG}: explain: input is {len(data) // (1024 * 1024)} MiB; reading its last "
                     f"{MAX_EXPLAIN_BYTES // (1024 * 1024)} MiB\n")
        data = data[-MAX_EXPLAIN_BYTES:]
    return data.decode("utf-8", "replace")


def cmd_explain(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from gpu_runbook.explain import MATCH, explain
    from gpu_runbook.pages import PAGES

    text = _read_explain_text(args, stderr)
    if not text.strip():
        raise UsageError("explain: the text is empty (paste the error message, or pipe a log into `explain -`)")
    matches = explain(text)
    if args.json:
        json.dump([{"page": m.page, "title": PAGES[m.page].title, "url": m.url, "matched": m.matched,
                    "score": m.score, "level": m.level, "why": list(m.why)} for m in matches], stdout, indent=2)
        stdout.write("\n")
    elif not matches:
        stdout.write("no runbook page matches this text; try `gpu-runbook check`, or search the site\n")
    for rank, m in enumerate(matches if not args.json else [], 1):
        stdout.write(f"{rank}. {m.level:<{LEVEL_WIDTH}} {PAGES[m.page].title}\n   {m.url}\n")
        for line in m.why[:3]:
            stdout.write(f"   - {line}\n")
    if matches and not args.json and not any(m.level == MATCH for m in matches):
        stdout.write("no known error string or signature matched: these pages are guesses from the words\n")
    return 0 if any(m.level == MATCH for m in matches) else 1


def cmd_report(args: argparse.Namespace, stdout: TextIO) -> int:
    from gpu_runbook.fleet import ReportInputError, build_report
    from gpu_runbook.render.fleet import ReportFormat
    from gpu_runbook.render.fleet import renderer_for as report_renderer

    if args.jobs < 0:
        raise UsageError(f"--jobs must be 0 (one per CPU) or more: {args.jobs}")
    try:
        report = build_report(args.paths, args.jobs or None)
    except ReportInputError as exc:
        raise UsageError(f"report: {exc}") from None
    if not report.judged and not report.unreadable:
        raise UsageError("report: no snapshot files (*.json, *.json.gz) under " + ", ".join(args.paths))
    report_renderer(ReportFormat(args.format))(report, stdout)
    return report.exit_code()


def cmd_list(args: argparse.Namespace, stdout: TextIO) -> int:
    from gpu_runbook.registry import load_checks

    specs = load_checks()
    rows = [{"id": s.id, "title": s.title, "page": s.page, "section": s.section, "url": s.url,
             "detects": s.detects} for s in specs.values()]
    if args.json:
        json.dump(rows, stdout, indent=2)
        stdout.write("\n")
        return 0
    width = max((len(r["id"]) for r in rows), default=10)
    for row in rows:
        stdout.write(f"{row['id']:<{width}}  {row['section']:<11} {row['title']}\n")
    return 0


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    for stream in (stdout, stderr):
        # Host text can hold lone surrogates (non-UTF-8 names): print them escaped, never crash on them.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(stdout)
            return EXIT_UNKNOWN
        if args.command == "explain":
            return cmd_explain(args, stdout, stderr)
        handler = {"collect": cmd_collect, "check": cmd_check, "report": cmd_report,
                   "list": cmd_list}[args.command]
        return handler(args, stdout)
    except UsageError as exc:
        stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_UNKNOWN
    except KeyboardInterrupt:
        stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # `gpu-runbook check | head`: the reader left; nothing more to say.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_UNKNOWN


if __name__ == "__main__":
    sys.exit(main())
