"""Write ``.env`` for ``docker compose`` from ``.env.example``, with fresh random secrets.

``python3 deploy/make_env.py`` (from the repository root) copies ``.env.example`` to ``.env`` and fills
every empty secret with a random value: passwords and keys as hex (safe inside the database and broker
URLs that embed them), the Airflow Fernet key in the format Fernet needs. It never overwrites an
existing ``.env`` unless told to (``--force``): the secrets of a running deployment live in its data.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRETS = (
    "ELASTIC_PASSWORD",
    "KIBANA_SYSTEM_PASSWORD",
    "KIBANA_ENCRYPTION_KEY",
    "PIPELINE_ES_PASSWORD",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
)
_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def secret_for(name: str) -> str:
    if name == "AIRFLOW_FERNET_KEY":
        # What cryptography.fernet.Fernet.generate_key() makes: 32 random bytes, URL-safe base64.
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    if name == "KIBANA_ENCRYPTION_KEY":
        return secrets.token_hex(24)  # Kibana wants at least 32 characters
    return secrets.token_hex(16)


def fill(example: str) -> str:
    """``example`` with every empty secret given a value; everything else unchanged."""
    lines = []
    for line in example.splitlines():
        match = _LINE.match(line)
        if match and match["name"] in SECRETS and not match["value"].strip():
            line = f"{match['name']}={secret_for(match['name'])}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--out", type=Path, default=ROOT / ".env")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(
            f"{args.out} exists: keeping it (its secrets are in the deployment's data); --force replaces it",
            file=sys.stderr,
        )
        return 1
    args.out.write_text(fill(args.example.read_text(encoding="utf-8")), encoding="utf-8")
    args.out.chmod(0o600)
    print(f"wrote {args.out} with new secrets; review ALERT_TO and the ports, then: docker compose up -d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
