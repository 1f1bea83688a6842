"""dev.env: written so that `set -a; . .crossmodel/dev.env` exports it, read back on restart."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from crossmodel_devstack.bootstrap import DevCredentials, dev_env, read_env_file, write_env_file
from crossmodel_devstack.run import LogTail


def test_dev_env_round_trips_and_is_sourceable(tmp_path: Path) -> None:
    creds = DevCredentials("acc_1", "key_1", "cm-abc$def'g", "cm-admin-x", 100, key_reused=False)
    path = tmp_path / "dev.env"
    values = dev_env(creds, "http://127.0.0.1:8080")
    write_env_file(path, values, "header line one\nline two")
    assert read_env_file(path) == values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'set -a; . {path}; set +a; echo "$OPENAI_BASE_URL|$OPENAI_API_KEY|$ANTHROPIC_BASE_URL"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "http://127.0.0.1:8080/v1|cm-abc$def'g|http://127.0.0.1:8080"


def test_missing_env_file_reads_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "nope.env") == {}


def test_log_lines_render_readably() -> None:
    line = (
        '{"service": "edge", "event": "request finished", "level": "info", '
        '"timestamp": "2026-11-25T20:01:02.123Z", "request_id": "req_1", "status": 200}'
    )
    assert LogTail.render(line) == "20:01:02 INFO  request finished  request_id=req_1 status=200"
    assert LogTail.render("Traceback (most recent call last):") == "Traceback (most recent call last):"
