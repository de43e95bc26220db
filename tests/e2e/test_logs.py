"""The server's logs carry ids, never what shoppers typed.

The real server with its access log on: shoppers type distinctive words into conversations,
one-shot search (a query string), events and a recipient; none of them reaches the server's
output, while the paths with conversation and shopper ids do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import KEY, Server, copy_catalogs
from web.cli import ACCESS_LOG_FORMAT

pytestmark = pytest.mark.e2e

WORDS = ("Capybaracrimson", "Narwhalnavy", "Tapirteal", "Okapiolive", "Lemurlilac")


def test_logs_carry_ids_not_what_shoppers_typed(tmp_path: Path, built_data_dir: Path,
                                                new_server: Callable[..., Server]) -> None:
    server = new_server(copy_catalogs(built_data_dir, tmp_path / "data"), log=tmp_path / "out.log",
                    args=("--no-import", "--access-log"))
    server.start()
    try:
        status, turn = server.call("POST", "/api/v1/conversations", {
            "channel": "web", "shopper_id": "log-shopper", "text": f"blue jeans {WORDS[0]}"},
            KEY)
        assert status == 201
        cid, token = turn["conversation_id"], turn["token"]
        status, _ = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                                {"text": f"in black {WORDS[1]}"}, token)
        assert status == 200
        status, _ = server.call("GET", f"/api/v1/search?q=red+dress+{WORDS[2]}&k=3")
        assert status == 200
        status, _ = server.call("GET", f"/api/v1/search?q=shoes+{WORDS[3]}"
                                "&shopper_id=log-shopper", token=KEY)
        assert status == 200
        status, _ = server.call("POST", "/api/v1/shoppers/log-shopper/events",
                                {"type": "search", "query": f"scarf {WORDS[4]}"}, KEY)
        assert status == 201
        status, _ = server.call("PUT", "/api/v1/shoppers/log-shopper/recipients/husband",
                                {"text": f"size L {WORDS[0]}"}, KEY)
        assert status == 200
        status, _ = server.call("GET", "/api/v1/conversations/c_0000000000000000000f",
                                token=KEY)  # a 404 is logged too
        assert status == 404
    finally:
        server.stop()
    out = server.log.read_text()
    assert [w for w in WORDS if w.casefold() in out.casefold()] == []
    assert f'"POST /api/v1/conversations/{cid}/turns HTTP/1.1" 200' in out
    assert '"GET /api/v1/search HTTP/1.1" 200' in out and "?q=" not in out
    assert "/api/v1/shoppers/log-shopper/events" in out
    assert "%(query_string)s" not in ACCESS_LOG_FORMAT
