"""A missing or damaged index stops `shopper serve` at once, saying what to run.

The real command on a copy of the session's catalogs with ``index.faiss`` deleted or cut in
half, or with no catalog at all: it exits with status 2 before any worker starts, and its
output names the damaged catalog and the exact command that rebuilds it in this data dir.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, copy_catalogs
from web.cli import build_parser

pytestmark = pytest.mark.e2e


def _delete(index: Path) -> None:
    index.unlink()


def _truncate(index: Path) -> None:
    os.truncate(index, index.stat().st_size // 2)


@pytest.mark.parametrize("damage", [_delete, _truncate], ids=["deleted", "truncated"])
def test_a_damaged_index_stops_the_server_with_the_command_that_fixes_it(
        tmp_path: Path, built_data_dir: Path, damage: Callable[[Path], None],
        new_server: Callable[..., Server]) -> None:
    data_dir = copy_catalogs(built_data_dir, tmp_path / "data")
    damage(data_dir / "catalogs" / "fashion" / "index.faiss")
    server = new_server(data_dir, workers=2, log=tmp_path / "server.log")
    assert server.launch().wait(timeout=60) == 2
    out = server.log.read_text()
    assert "Booting worker" not in out
    assert "cannot serve: catalog 'fashion'" in out and "is damaged" in out
    command = f"shopper catalog rebuild --name fashion --data-dir {data_dir}"
    assert f"`{command}`" in out
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.name, Path(args.data_dir)) == ("fashion", data_dir)


def test_no_catalog_at_all_stops_the_server(tmp_path: Path,
                                            new_server: Callable[..., Server]) -> None:
    server = new_server(tmp_path / "empty", log=tmp_path / "server.log")
    server.data_dir.mkdir()
    assert server.launch().wait(timeout=60) == 2
    out = server.log.read_text()
    assert "no catalog is built in" in out and "without --no-import" in out
