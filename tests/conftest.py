"""Shared fixtures: the real model, a real slice of both bundled catalogs built once per test
session, and a fresh app (own SQLite file) per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from assistant.engine import Assistant  # noqa: E402
from catalog.catalog import Catalog, ensure_catalog  # noqa: E402
from catalog.embedder import CachedEmbedder, SentenceTransformerEmbedder  # noqa: E402
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
def built_data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: CachedEmbedder) -> Path:
    """A data dir holding real slices of both bundled catalogs, built by the real importer."""
    data_dir = tmp_path_factory.mktemp("data")
    for name, every in SLICES.items():
        ensure_catalog(data_dir, name, embedder, every=every, progress=False)
    return data_dir


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


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    yield path
