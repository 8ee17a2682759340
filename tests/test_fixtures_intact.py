"""The vendored third-party fixtures are byte-for-byte the upstream files (git blob SHA-1s)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "data" / "fixtures"
ROWS = [
    line.split("\t")
    for line in (FIXTURES / "MANIFEST.tsv").read_text().splitlines()[1:]
    if line.strip()
]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("rel, size, sha1", ROWS, ids=[r[0] for r in ROWS])
def test_fixture_unchanged(rel: str, size: str, sha1: str) -> None:
    data = (FIXTURES / rel).read_bytes()
    assert len(data) == int(size)
    assert git_blob_sha1(data) == sha1
