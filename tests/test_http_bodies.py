"""Response bodies: content codings undone under the cap, refused when not asked for.

``BodyReader`` is fed by hand here (pieces as small as one byte, as a network may cut
them); the client tests at the end go through a real socket to the fake server, whose
bytes are exactly what the test put on the wire.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from monitor.errors import HTTPStatusError, MalformedResponse, ResponseTooLarge
from monitor.fakeforum.server import FakeForumServer, FakeResponse, Request
from monitor.http import BodyReader, HttpPolicy, PoliteClient
from monitor.telemetry import Telemetry
from tests.test_http_support import MIB, ClientFactory, client_factory, requests_total

TEXT = b'{"posts": [' + b", ".join(b'{"id": %d}' % i for i in range(2000)) + b"]}"
"""About 24 KB of JSON: several deflate blocks, so a stream cut short is cut mid-way."""
HOST = "forum.test"


def reader(encoding: str | None, *, cap: int = MIB) -> BodyReader:
    return BodyReader(encoding=encoding, cap=cap, host=HOST, url=f"https://{HOST}/x")


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def read(encoding: str | None, wire: bytes, *, size: int = 7, cap: int = MIB) -> bytes:
    body = reader(encoding, cap=cap)
    for piece in pieces(wire, size):
        body.feed(piece)
    return body.finish()


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def gzip_of_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, made a MiB at a time (never ``size`` bytes at once)."""
    packer = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    parts = [packer.compress(block) for _ in range(size // MIB)]
    return b"".join(parts) + packer.compress(bytes(size % MIB)) + packer.flush()


# --- codings that are read ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_identity_passes_bytes_through(encoding: str | None) -> None:
    assert read(encoding, TEXT) == TEXT


@pytest.mark.parametrize("encoding", ["gzip", "GZip", "x-gzip", "gzip, identity"])
def test_gzip_is_undone(encoding: str) -> None:
    assert read(encoding, gzip.compress(TEXT)) == TEXT


@pytest.mark.parametrize(
    "wire",
    [zlib.compress(TEXT), raw_deflate(TEXT)],
    ids=["zlib-wrapped (RFC 9110)", "raw deflate (as IIS sent it)"],
)
@pytest.mark.parametrize("size", [1, 2, 3, 4096])
def test_deflate_is_undone_zlib_or_raw_in_any_pieces(wire: bytes, size: int) -> None:
    # one-byte pieces: the two bytes that tell zlib from raw deflate come in two feeds
    assert read("deflate", wire, size=size) == TEXT


def test_bytes_after_the_end_of_a_gzip_stream_are_ignored() -> None:
    assert read("gzip", gzip.compress(TEXT) + b"\r\n") == TEXT


def test_empty_body_with_a_coding_is_empty() -> None:
    assert read("gzip", b"") == b""


# --- codings that are refused ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip, gzip", "deflate,gzip", "br, gzip", "gzip, x-gzip"])
def test_stacked_encodings_are_refused_naming_them(encoding: str) -> None:
    with pytest.raises(MalformedResponse) as caught:
        reader(encoding)
    assert f"stacked encodings {encoding!r}" in str(caught.value)
    assert caught.value.reason == "malformed"
    assert caught.value.host == HOST


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "x-bomb"])
def test_encodings_not_asked_for_are_refused_naming_them(encoding: str) -> None:
    with pytest.raises(MalformedResponse) as caught:
        reader(encoding)
    assert f"is encoded {encoding!r}, which we did not ask for" in str(caught.value)


def test_a_hostile_encoding_name_is_escaped_and_cut_in_the_message() -> None:
    with pytest.raises(MalformedResponse) as caught:
        reader("br\n2026-01-01 ERROR forged " + "y" * 5000)
    message = str(caught.value)
    assert "\n" not in message
    assert "\\n2026-01-01 ERROR forged" in message
    assert len(message) < 400


def test_truncated_gzip_stream_is_malformed() -> None:
    wire = gzip.compress(TEXT)
    with pytest.raises(MalformedResponse, match="gzip body from forum.test ends before"):
        read("gzip", wire[: len(wire) // 2])


def test_gzip_stream_without_its_trailer_is_malformed() -> None:
    # every byte of the text is there; the 8-byte trailer (CRC-32, size) is not
    with pytest.raises(MalformedResponse, match="ends before its stream does"):
        read("gzip", gzip.compress(TEXT)[:-8])


@pytest.mark.parametrize("cut", [1, 100])
def test_truncated_deflate_stream_is_malformed(cut: int) -> None:
    with pytest.raises(MalformedResponse, match="deflate body from forum.test ends before"):
        read("deflate", zlib.compress(TEXT)[:cut])


def test_bytes_that_are_not_gzip_are_malformed() -> None:
    with pytest.raises(MalformedResponse, match="does not decode as gzip"):
        read("gzip", b"<html>not gzip at all</html>")


# --- the cap --------------------------------------------------------------------------------


def test_decoded_body_exactly_at_the_cap_is_kept() -> None:
    assert read("gzip", gzip.compress(TEXT), cap=len(TEXT)) == TEXT


def test_decoded_body_one_byte_over_the_cap_is_too_large() -> None:
    with pytest.raises(ResponseTooLarge, match="cap once decoded \\(gzip\\)"):
        read("gzip", gzip.compress(TEXT), cap=len(TEXT) - 1)


def test_a_bomb_in_one_piece_never_decodes_past_the_cap() -> None:
    cap = MIB
    bomb = gzip_of_zeros(256 * MIB)
    assert len(bomb) < cap  # so only the decoded size can stop it
    body = reader("gzip", cap=cap)
    with pytest.raises(ResponseTooLarge):
        body.feed(bomb)  # all of it at once: one network read of the whole body
    # the limit per call held: not 256 MiB, nor even a 64 KiB network chunk's worth
    assert body.size == cap + 1


def test_bytes_received_count_against_the_cap_too() -> None:
    # a stream that never ends: an endless run of bytes after a gzip member would
    # otherwise be read for ever (they decode to nothing)
    body = reader("gzip", cap=1000)
    body.feed(gzip.compress(b"{}"))
    with pytest.raises(ResponseTooLarge, match="cap before decoding \\(gzip\\)"):
        for _ in range(100):
            body.feed(b"\0" * 100)
    assert body.received <= 1000 + 100


# --- through the client, over a real socket -------------------------------------------------


@pytest.fixture
async def make_client(telemetry: Telemetry) -> AsyncIterator[ClientFactory]:
    make, close_all = client_factory(telemetry)
    yield make
    await close_all()


def serving(wire: bytes, encoding: str) -> FakeForumServer:
    def handler(request: Request) -> FakeResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        return FakeResponse(200, wire, headers)

    return FakeForumServer(handler)


@pytest.mark.parametrize(
    ("encoding", "wire"),
    [("gzip", gzip.compress(TEXT)), ("deflate", zlib.compress(TEXT))],
)
async def test_a_coded_body_is_decoded_once_and_the_codings_asked_for_are_sent(
    make_client: ClientFactory, encoding: str, wire: bytes
) -> None:
    with serving(wire, encoding) as server:
        response = await make_client().get(server.base_url + "/posts.json")
    assert response.content == TEXT  # decoded once: twice would not parse, none would differ
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


async def test_gzip_of_gzip_is_refused_before_it_is_inflated(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    # 10 MiB of zeros, gzipped twice: a few KB on the wire
    bomb = gzip.compress(gzip_of_zeros(10 * MIB))
    assert len(bomb) < 16 * 1024
    with serving(bomb, "gzip, gzip") as server:
        with pytest.raises(MalformedResponse) as caught:
            await make_client(max_body_bytes=MIB).get(server.base_url + "/posts.json")
        assert len(server.requests) == 1  # not asked for again
    assert "stacked encodings 'gzip, gzip'" in str(caught.value)
    assert requests_total(registry, "error") == 1


async def test_an_encoding_not_asked_for_is_refused_not_passed_on_raw(
    make_client: ClientFactory,
) -> None:
    # httpx passes a coding it has no decoder for through as it is: zstd frames as "JSON"
    with serving(b"(\xb5/\xfd" + TEXT, "zstd") as server:
        with pytest.raises(MalformedResponse, match="'zstd', which we did not ask for"):
            await make_client().get(server.base_url + "/posts.json")


async def test_a_body_past_the_cap_once_decoded_is_too_large_over_a_socket(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    bomb = gzip_of_zeros(64 * MIB)
    with serving(bomb, "gzip") as server:
        with pytest.raises(ResponseTooLarge, match="passed the 1048576-byte cap once decoded"):
            await make_client(max_body_bytes=MIB).get(server.base_url + "/posts.json")
    assert requests_total(registry, "error") == 1


async def test_an_error_page_is_not_read_so_its_coding_does_not_matter(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    def handler(request: Request) -> FakeResponse:
        bomb = b"\x1f\x8b not even gzip"
        return FakeResponse(404, bomb, {"Content-Encoding": "gzip, br"})

    with FakeForumServer(handler) as server:
        with pytest.raises(HTTPStatusError) as caught:
            await make_client().get(server.base_url + "/gone.json")
    assert caught.value.status == 404  # not a malformed body: the status is what went wrong
    assert requests_total(registry, "404") == 1


# --- an error's body, for the APIs that put their error there -------------------------------

ERROR = b'{"error_id":400,"error_name":"bad_parameter","error_message":"site is required"}'
"""The shape of Stack Exchange's error object (answered with HTTP 400)."""


def erring(wire: bytes, encoding: str, status: int = 400) -> FakeForumServer:
    def handler(request: Request) -> FakeResponse:
        return FakeResponse(status, wire, {"Content-Encoding": encoding})

    return FakeForumServer(handler)


async def test_an_error_body_is_read_decoded_only_when_asked_for(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    with erring(gzip.compress(ERROR), "gzip") as server:
        client = make_client()
        with pytest.raises(HTTPStatusError) as asked:
            await client.get(server.base_url + "/2.3/questions", error_body=True)
        with pytest.raises(HTTPStatusError) as not_asked:
            await client.get(server.base_url + "/2.3/questions")
    assert (asked.value.status, asked.value.body) == (400, ERROR)  # gzip undone
    assert not_asked.value.body == b""
    assert requests_total(registry, "400") == 2  # a 4xx is not retried, asked or not


@pytest.mark.parametrize(
    ("wire", "encoding"),
    [
        (gzip.compress(b"x" * (65 * 1024)), "gzip"),  # past ERROR_BODY_BYTES once inflated
        (b"\x1f\x8b not even gzip", "gzip"),
        (gzip.compress(ERROR)[:20], "gzip"),  # a stream cut short
    ],
    ids=["over the cap", "not gzip", "cut short"],
)
async def test_an_error_body_that_is_no_error_object_is_dropped_not_raised(
    make_client: ClientFactory, wire: bytes, encoding: str
) -> None:
    with erring(wire, encoding) as server:
        with pytest.raises(HTTPStatusError) as caught:
            await make_client().get(server.base_url + "/2.3/answers", error_body=True)
    assert (caught.value.status, caught.value.body) == (400, b"")  # the status still tells


def test_headroom_a_source_reads_in_its_bodies_sets_the_gauge(
    telemetry: Telemetry, registry: CollectorRegistry
) -> None:
    client = PoliteClient(policy=HttpPolicy(), telemetry=telemetry)

    def remaining() -> float | None:
        labels = {"host": "api.stackexchange.com"}
        return registry.get_sample_value("forum_monitor_rate_limit_remaining", labels)

    client.note_remaining("api.stackexchange.com", 285)
    assert remaining() == 285
    client.note_remaining("api.stackexchange.com", float("nan"))  # ignored
    assert remaining() == 285
    client.note_remaining("api.stackexchange.com", -89970)  # a recorded answer: spent
    assert remaining() == 0
