"""What every command shares: numbers and tables as text, the line that says what a run did, the
``--json`` envelope, and messages on stderr (results go to stdout, everything else to stderr)."""
from __future__ import annotations

import json
import platform
import socket
import sys

from .. import __version__
from ..dataset import now_utc
from ..intervals import Interval


def fmt(v, nd: int = 1) -> str:
    """A cell: "-" for nothing (None or NaN), a float with ``nd`` decimals, an int with thousands separators."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def num(v, nd: int = 0) -> str:
    return "-" if v is None or v != v else f"{v:,.{nd}f}"


def ci(e: Interval, nd: int = 0) -> str:
    """An estimate and its interval: "estimate [low, high]", the estimate alone when there is no interval."""
    if not e.has_estimate():
        return "-"
    if not e.has_interval():
        return num(e.estimate, nd)
    return f"{num(e.estimate, nd)} [{num(e.low, nd)}, {num(e.high, nd)}]"


def ms(us) -> str:
    """Microseconds as milliseconds with three decimals; "-" for nothing."""
    return "-" if us is None or us != us else f"{us / 1e3:,.3f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def ran_line(s, what: str, table_name: str, failed: str | None = None) -> str:
    """What a run of a study did (a ``runner.Summary``): "<ran> <what> run (<failed> failed), <skipped>
    already done, in <seconds> s: <its table>"; ``failed``: the text after "run" instead ("": none)."""
    failed = f" ({s.failed} failed)" if failed is None else failed
    return f"{s.ran} {what} run{failed}, {s.skipped} already done, in {s.elapsed_s:.0f} s: {s.out / table_name}"


def say(m: str) -> None:
    print(m, file=sys.stderr)


def say_why(errors: dict[str, int], what: str) -> None:
    """The distinct errors of failed trials or cuts, the most frequent first, on stderr."""
    for text, n in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        say(f"{n} {what} failed: {text}")
    if len(errors) > 5:
        say(f"... and {len(errors) - 5} other errors (see the error column of the dataset)")


def envelope(target=None) -> dict:
    """Where and when a command's JSON output was made, and by which command: it heads every --json."""
    return {"tool": "fsyncstudy", "version": __version__, "command": "python -m fsyncstudy " + " ".join(sys.argv[1:]),
            "time": now_utc(), "host": socket.gethostname(), "kernel": platform.release(),
            "python": platform.python_version(), "target": target.as_dict() if target is not None else None}


def print_json(obj, indent: int = 2) -> None:
    json.dump(obj, sys.stdout, indent=indent)
    print()


def records(frame) -> list[dict]:
    """A DataFrame's rows as JSON's objects (pandas' own conversion: NaN as null, numpy types as JSON's)."""
    return json.loads(frame.to_json(orient="records"))
