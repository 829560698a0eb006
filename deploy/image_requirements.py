"""What the Dockerfile installs on top of the official Airflow image, computed inside the build.

The base image already holds Airflow and its providers at the versions of Airflow's own constraints
file; upgrading those under it is how images break. So the image gets:

* ``requirements.txt``: the project's runtime dependencies with pyproject.toml's own specifiers (the
  versions the code is tested with), except ``apache-airflow`` (the base image is that release) and
  ``noida-db`` (the embedded server: the image always talks to Elasticsearch through ES_URL); plus
  ``apache-airflow==<the base's version>`` so no requirement can move Airflow, and whatever extras the
  build asks for (the Celery provider, s3fs).
* ``constraints.txt``: requirements.lock's pins for the packages the base image does *not* have, so a
  transitive dependency that the image gains comes at the version the test suite ran with. Packages the
  base image already has are left out: they stay at the versions Airflow's constraints chose, unless a
  direct requirement above says otherwise — and then ``pip check`` after the install says whether the
  two can live together.

Usage: ``python image_requirements.py --lock requirements.lock --pyproject pyproject.toml --out DIR
[EXTRA ...]``. Standard library only (it runs before anything is installed).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

# Not installed in the image: the base image *is* Airflow; noida-db is only the embedded default.
EXCLUDED = {"apache-airflow", "noida-db"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``PyYAML`` and ``pyyaml``, ``jusText`` and ``justext`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = _NAME.match(spec)
    if not match:
        raise ValueError(f"not a requirement: {spec!r}")
    return canonical(match.group(1))


def read_lock(text: str) -> dict[str, str]:
    """``name==version`` lines of requirements.lock, by canonical name (comments and blanks skipped)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            raise ValueError(f"requirements.lock line is not pinned: {line!r}")
        pins[requirement_name(line)] = line
    return pins


def runtime_dependencies(pyproject: str) -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml, as written there."""
    deps: list[str] = tomllib.loads(pyproject)["project"]["dependencies"]
    return deps


def plan(
    lock: dict[str, str], dependencies: list[str], installed: dict[str, str], extras: list[str]
) -> tuple[list[str], list[str]]:
    """(requirements, constraints) for pip; ``installed`` maps the base image's packages to versions."""
    requirements = [dep for dep in dependencies if requirement_name(dep) not in EXCLUDED]
    if "apache-airflow" in installed:
        requirements.append(f"apache-airflow=={installed['apache-airflow']}")
    requirements += extras
    constraints = [pin for name, pin in sorted(lock.items()) if name not in installed and name not in EXCLUDED]
    return requirements, constraints


def installed_packages() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--pyproject", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for requirements.txt, constraints.txt")
    parser.add_argument("extras", nargs="*", help="more requirements, e.g. apache-airflow-providers-celery==3.26.0")
    args = parser.parse_args(argv)
    installed = installed_packages()
    requirements, constraints = plan(
        read_lock(args.lock.read_text(encoding="utf-8")),
        runtime_dependencies(args.pyproject.read_text(encoding="utf-8")),
        installed,
        [e for extra in args.extras for e in extra.split() if e],
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (args.out / "constraints.txt").write_text("\n".join(constraints) + "\n", encoding="utf-8")
    print(
        f"{len(requirements)} requirements; {len(constraints)} lock pins for packages the base image lacks "
        f"({len(installed)} packages already installed)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
