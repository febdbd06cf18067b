"""Compile a benchmark's C side at run time (the benchmarks that compare our loops with C need one)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def compile_c(source: str, workdir: str, name: str, shared: bool = False) -> str:
    """Compile ``source`` with cc -O2 into ``workdir``; the path of the program (or shared library)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit(f"{Path(sys.argv[0]).name} needs a C compiler (cc) for its C side: apt-get install gcc")
    src, out = os.path.join(workdir, f"{name}.c"), os.path.join(workdir, name + (".so" if shared else ""))
    Path(src).write_text(source)
    subprocess.run([cc, "-O2", *(["-shared", "-fPIC"] if shared else []), "-o", out, src], check=True)
    return out
