"""The project around the package: its declared dependencies agree everywhere."""
import re
import tomllib

from conftest import REPO


def pyproject_requirements() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = set(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs |= {r for r in extra if not r.startswith("fsyncstudy")}  # an extra naming another extra
    return {r.replace(" ", "").lower() for r in reqs}


def conda_requirements() -> set[str]:
    """The conda dependencies and, for packages conda-forge lacks, the ones under ``pip:``."""
    out = set()
    text = (REPO / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+\S*)$", line)  # top-level conda dependencies
        if m and not re.match(r"^(python|pip)\b", m.group(1)):
            out.add(m.group(1).lower())
        m = re.match(r"^      - ([A-Za-z0-9_.\-]+\S*)$", line)  # the pip list, less the package itself
        if m:
            out.add(m.group(1).lower())
    return out


def test_environment_yml_lists_the_same_packages_and_bounds_as_pyproject():
    assert conda_requirements() == pyproject_requirements()


def test_environment_yml_installs_the_package_itself():
    text = (REPO / "environment.yml").read_text()
    assert "- conda-forge" in text and "- nodefaults" in text and "- -e ." in text


def test_make_runs_in_a_conda_environment_without_a_venv():
    import subprocess
    for target in ("test", "report"):
        out = subprocess.run(["make", "-n", target, "PY=python", "STAMP="], capture_output=True, text=True, cwd=REPO,
                             timeout=60).stdout
        assert ".venv" not in out and "python -m " in out, out
    out = subprocess.run(["make", "-n", "test"], capture_output=True, text=True, cwd=REPO, timeout=60).stdout
    assert f"{REPO}/.venv/bin/python -m pytest --nbval-lax" in out
