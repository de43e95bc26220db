"""Shared fixtures: the real model, a real slice of both bundled catalogs built once per test
session (with the int8 ONNX copy of the model that servers encode queries with), and a fresh
app (own SQLite file) per test."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from assistant.agents import AgentStore  # noqa: E402
from assistant.engine import Assistant  # noqa: E402
from catalog.catalog import Catalog, ensure_catalog  # noqa: E402
from catalog.embedder import (  # noqa: E402
    CachedEmbedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
)
from catalog.onnx_model import check_texts_from, ensure_onnx_model, onnx_dir  # noqa: E402
from web import Services, create_app  # noqa: E402

API_KEY = "test-server-key"
# Every 15th fashion product (2,964) and every 8th Myntra product (1,562): every gender,
# the common article types and colours, and a build that takes well under a minute.
SLICES = {"fashion": 15, "myntra": 8}


@pytest.fixture(scope="session")
def embedder() -> CachedEmbedder:
    inner = SentenceTransformerEmbedder()
    emb = CachedEmbedder(inner)
    assert emb.embed(["hello"]).shape == (1, 384)
    return emb


@pytest.fixture(scope="session")
def built_data_dir(tmp_path_factory: pytest.TempPathFactory,
                   embedder: CachedEmbedder) -> Iterator[Path]:
    """A data dir holding real slices of both bundled catalogs, built by the real importer,
    and the int8 ONNX model exported once (about 10-30 s). SHOPPER_ONNX_DIR points at it
    for the session, so every server over a copy of this data dir reuses it."""
    data_dir = tmp_path_factory.mktemp("data")
    built = {name: ensure_catalog(data_dir, name, embedder, every=every, progress=False)
             for name, every in SLICES.items()}
    folder = onnx_dir(data_dir)
    assert isinstance(embedder.inner, SentenceTransformerEmbedder)
    ensure_onnx_model(folder, full=embedder.inner, check_texts=check_texts_from(built))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPPER_ONNX_DIR", str(folder))
        yield data_dir


@pytest.fixture(scope="session")
def onnx_embedder(built_data_dir: Path) -> OnnxEmbedder:
    """The int8 ONNX embedder exported into the session's data dir, as a server loads it."""
    return ensure_onnx_model(onnx_dir(built_data_dir))


@pytest.fixture(scope="session")
def catalogs(built_data_dir: Path, embedder: CachedEmbedder) -> dict[str, Catalog]:
    from catalog.catalog import load_catalog

    return {name: load_catalog(built_data_dir, name) for name in SLICES}


@pytest.fixture(scope="session")
def fashion(catalogs: dict[str, Catalog]) -> Catalog:
    return catalogs["fashion"]


@pytest.fixture(scope="session")
def myntra(catalogs: dict[str, Catalog]) -> Catalog:
    return catalogs["myntra"]


@pytest.fixture
def services(tmp_path: Path, catalogs: dict[str, Catalog], embedder: CachedEmbedder) -> Services:
    """Services over the shared catalogs with this test's own SQLite file."""
    svc = Services(data_dir=tmp_path, api_key=API_KEY)
    svc.assistant = Assistant(catalogs=catalogs, embedder=embedder, store=svc.store,
                              default_catalog="fashion")
    svc.ready.set()
    return svc


@pytest.fixture
def app(services: Services):  # type: ignore[no-untyped-def]
    return create_app({"TESTING": True, "DATA_DIR": str(services.data_dir),
                       "API_KEY": API_KEY, "ANON_RATE_PER_MINUTE": 1000},
                      services=services)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


SERVER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def server_headers() -> dict[str, str]:
    return dict(SERVER)


class Chat:
    """A shopper talking through the API, as the widget does."""

    def __init__(self, client, text: str | None = None, **fields: object) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        headers = SERVER if fields.get("shopper_id") else {}
        body = {"channel": "web", **fields}
        if text is not None:
            body["text"] = text
        r = client.post("/api/v1/conversations", json=body, headers=headers)
        assert r.status_code == 201, r.get_json()
        self.turn = r.get_json()
        self.id = self.turn["conversation_id"]
        self.headers = {"Authorization": f"Bearer {self.turn['token']}"}

    def send(self, **body: object) -> dict:  # type: ignore[type-arg]
        r = self.client.post(f"/api/v1/conversations/{self.id}/turns", json=body,
                             headers=self.headers)
        assert r.status_code == 200, r.get_json()
        self.turn = r.get_json()
        return self.turn

    def say(self, text: str) -> dict:  # type: ignore[type-arg]
        return self.send(text=text)

    def tap(self, attribute: str, value: str | None) -> dict:  # type: ignore[type-arg]
        return self.send(answer={"attribute": attribute, "value": value})

    @property
    def picks(self) -> list[dict]:  # type: ignore[type-arg]
        return self.turn["picks"]


@pytest.fixture
def chat(client):  # type: ignore[no-untyped-def]
    def start(text: str | None = None, **fields: object) -> Chat:
        return Chat(client, text, **fields)
    return start


AGENT_PASSWORD = "correct horse battery"


@pytest.fixture
def agents(services: Services) -> AgentStore:
    """Three console agents (alice, bob, carol the admin), all with AGENT_PASSWORD."""
    store = AgentStore(services.db())
    store.add_agent("alice", AGENT_PASSWORD)
    store.add_agent("bob", AGENT_PASSWORD)
    store.add_agent("carol", AGENT_PASSWORD, is_admin=True)
    return store


def form_token(html: str) -> str:
    """The CSRF token of the form on a console page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def login(client: Any, name: str = "alice", password: str = AGENT_PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token from the console page."""
    page = client.get("/console/login")
    r = client.post("/console/login", data={"csrf_token": form_token(page.text), "name": name,
                                            "password": password})
    assert r.status_code == 303, r.text
    console = client.get("/console")
    assert console.status_code == 200
    match = re.search(r'data-csrf="([^"]+)"', console.text)
    assert match
    return match.group(1)


@dataclass
class World:
    """Real rows in every table (shopper s-1 with a preference, an event, a recipient and a
    link code; a kiosk conversation of theirs with picks and a share link) and a good value
    for every path parameter of the app's routes."""

    services: Services
    conversation_id: str
    token: str
    product_id: str
    share_token: str
    paths: dict[str, str] = field(default_factory=dict)

    def db(self) -> Any:
        return self.services.db()


@pytest.fixture
def world(client: Any, services: Services, agents: Any) -> World:
    r = client.post("/api/v1/conversations", headers=SERVER,
                    json={"channel": "kiosk", "store_id": "blr-01", "shopper_id": "s-1",
                          "text": "black t-shirt for men"})
    assert r.status_code == 201, r.get_json()
    turn = r.get_json()
    cid, token = turn["conversation_id"], turn["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post(f"/api/v1/conversations/{cid}/turns", json={"action": "more"},
                       headers=auth).status_code == 200
    pid = client.get("/api/v1/search?q=watch&k=1").get_json()["picks"][0]["product_id"]
    share = client.post(f"/api/v1/conversations/{cid}/share", headers=auth).get_json()
    for method, path, body in [
            ("put", "/api/v1/shoppers/s-1/preferences",
             {"attribute": "colour", "value": "Black", "polarity": "avoid"}),
            ("post", "/api/v1/shoppers/s-1/events", {"type": "purchase", "product_id": pid}),
            ("put", "/api/v1/shoppers/s-1/recipients/husband",
             {"attributes": {"colour": "Navy Blue"}, "note": "size L"}),
            ("post", "/api/v1/shoppers/s-1/link-code", None)]:
        r = getattr(client, method)(path, json=body, headers=SERVER)
        assert r.status_code < 300, (path, r.get_json())
    w = World(services, cid, token, pid, share["path"].split("/")[-1])
    w.paths = {"conversation_id": cid, "shopper_id": "s-1", "name": "husband",
               "product_id": pid, "token": w.share_token, "filename": "chat.js"}
    return w


def routes(app: Any) -> list[tuple[Any, str]]:
    """Every (url_map rule, method) of the app but HEAD and OPTIONS, in a stable order."""
    return sorted(((rule, m) for rule in app.url_map.iter_rules()
                   for m in rule.methods - {"HEAD", "OPTIONS"}),
                  key=lambda rm: (rm[0].rule, rm[1]))


def rule_url(rule: Any, values: dict[str, str], raw: dict[str, str] | None = None) -> str:
    """The rule's path with good values, except those in ``raw`` (already on-the-wire)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if raw and name in raw:
            return raw[name]
        return quote(values[name], safe="")
    return re.sub(r"<(?:([a-z]+):)?([a-z_]+)>", sub, rule.rule)


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    yield path
