"""mc.TransportHeader: the transport.l5d.io/v1 connection header."""

import struct

import pytest

import mc


def test_encode_matches_the_wire_format():
    h = mc.TransportHeader(8080, "web.shop.svc.cluster.local", "http2")
    data = h.encode()
    assert data.startswith(mc.TRANSPORT_PREFACE)
    assert mc.TRANSPORT_PREFACE == b"transport.l5d.io/v1\r\n\r\n"
    (length,) = struct.unpack(">I", data[len(mc.TRANSPORT_PREFACE):][:4])
    body = data[len(mc.TRANSPORT_PREFACE) + 4:]
    assert length == len(body)
    # port = 8080 (field 1, varint), name (field 2), session protocol http2 (field 3: {2: {}})
    name = b"web.shop.svc.cluster.local"
    assert body == b"\x08\x90\x3f" + b"\x12" + bytes([len(name)]) + name + b"\x1a\x02\x12\x00"


@pytest.mark.parametrize(
    "header",
    [
        mc.TransportHeader(1),
        mc.TransportHeader(65535, "a.b", "http1"),
        mc.TransportHeader(443, None, "http2"),
        mc.TransportHeader(4143, "ünïcode.example"),
    ],
)
def test_round_trip(header):
    decoded = mc.TransportHeader.decode(header.encode())
    assert decoded == header
    assert hash(decoded) == hash(header)
    assert (decoded.port, decoded.name, decoded.protocol) == (header.port, header.name, header.protocol)


def test_fields_and_repr():
    h = mc.TransportHeader(80, "x", "http1")
    assert (h.port, h.name, h.protocol) == (80, "x", "http1")
    assert repr(h) == "TransportHeader(port=80, name='x', protocol='http1')"
    assert mc.TransportHeader(80).protocol is None


def test_constructor_errors():
    with pytest.raises(ValueError, match="port 0"):
        mc.TransportHeader(0)
    with pytest.raises(OverflowError):
        mc.TransportHeader(70000)
    with pytest.raises(ValueError, match="not a session protocol"):
        mc.TransportHeader(80, "x", "http3")


def test_decode_prefix_streams():
    data = mc.TransportHeader(80, "svc", "http1").encode()
    header, needed = mc.TransportHeader.decode_prefix(data[:5])
    assert header is None and needed == len(mc.TRANSPORT_PREFACE) + 4 - 5
    header, needed = mc.TransportHeader.decode_prefix(data[:-1])
    assert header is None and needed == 1
    header, consumed = mc.TransportHeader.decode_prefix(data + b"GET / HTTP/1.1\r\n")
    assert header == mc.TransportHeader(80, "svc", "http1")
    assert consumed == len(data)


def test_decode_errors():
    data = mc.TransportHeader(80, "svc").encode()
    with pytest.raises(mc.TransportError, match="does not start with the preface"):
        mc.TransportHeader.decode(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(mc.TransportError, match="incomplete") as info:
        mc.TransportHeader.decode(data[:-2])
    assert info.value.needed == 2
    with pytest.raises(mc.TransportError, match="3 byte\\(s\\) follow"):
        mc.TransportHeader.decode(data + b"abc")
    too_long = mc.TRANSPORT_PREFACE + struct.pack(">I", mc.TRANSPORT_MAX_HEADER_LEN + 1)
    with pytest.raises(mc.TransportError, match="exceeds the maximum"):
        mc.TransportHeader.decode(too_long)
    no_port = mc.TRANSPORT_PREFACE + struct.pack(">I", 0)
    with pytest.raises(mc.TransportError, match="outside 1..=65535"):
        mc.TransportHeader.decode(no_port)
    bad_utf8 = mc.TRANSPORT_PREFACE + struct.pack(">I", 6) + b"\x08\x50\x12\x02\xff\xfe"
    with pytest.raises(mc.TransportError, match="not valid UTF-8"):
        mc.TransportHeader.decode(bad_utf8)
    truncated_varint = mc.TRANSPORT_PREFACE + struct.pack(">I", 1) + b"\x08"
    with pytest.raises(mc.TransportError, match="malformed protobuf"):
        mc.TransportHeader.decode(truncated_varint)
    assert issubclass(mc.TransportError, mc.Error)
