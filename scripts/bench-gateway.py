#!/usr/bin/env python3
"""Load client, backend and process probes for scripts/bench-gateway.

Subcommands:
  backend PORT                       sink for bytes; answers HTTP/1.1 keep-alive GETs with 2 bytes
  bulk PORT STREAMS BYTES [HEADER]   push BYTES through each of STREAMS mTLS connections
  latency PORT N HOST                N small GETs over one persistent mTLS connection: p50 p99 (us)
  latency-mix N HOST BLOCK WARM NAME=PORT...
                                     the same for every proxy at once, interleaved in blocks of
                                     BLOCK requests (WARM more untimed before each): a line
                                     "NAME p50 p99" per proxy
  hold PORT N [HEADER]               open N mTLS connections, print "held K" (K still open), wait for stdin EOF
  hold-http PORT N HOST              the same with HTTP/1.1 connections that each made one request first
  hold-bulk PORT N BYTES [HEADER]    the same with connections that each sent BYTES first
  cpu PID...                         utime+stime seconds of the processes and their descendants
  rss PID...                         summed VmRSS (KiB) of the processes and their descendants
HEADER is NAME:PORT: offer ALPN transport.l5d.io/v1 and send the transport header (mc-gateway).
Certificates come from $BENCH_DIR (ca.pem, client.pem, client.key); the server name is $BENCH_SNI.
"""
import asyncio
import os
import socket
import ssl
import struct
import sys
import threading
import time

DIR = os.environ.get("BENCH_DIR", ".")
SNI = os.environ.get("BENCH_SNI", "gateway")


def header(spec):
    name, port = spec.rsplit(":", 1)
    body = b"\x08" + varint(int(port)) + b"\x12" + varint(len(name)) + name.encode()
    return b"transport.l5d.io/v1\r\n\r\n" + struct.pack(">I", len(body)) + body


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def context(alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(DIR, "ca.pem"))
    ctx.load_cert_chain(os.path.join(DIR, "client.pem"), os.path.join(DIR, "client.key"))
    if alpn:
        ctx.set_alpn_protocols([alpn])
    return ctx


def connect(port, spec=None, alpn=None, timeout=None):
    ctx = context("transport.l5d.io/v1" if spec else alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(raw, server_hostname=SNI)
    if spec:
        s.sendall(header(spec))
    return s


def bulk(port, streams, nbytes, spec=None):
    chunk = os.urandom(64 * 1024)

    def one():
        s = connect(port, spec)
        left = nbytes
        while left > 0:
            n = min(left, len(chunk))
            s.sendall(chunk[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(1)
        except OSError:
            pass
        s.close()

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def latency(port, n, host):
    """N small GETs, one after another, over one persistent connection: prints p50 p99 (us)."""
    p50, p99 = latency_mix({"proxy": port}, n, host)["proxy"]
    print(f"{p50:.0f} {p99:.0f}")


def latency_mix(ports, n, host, block=1, warm=0):
    """N small GETs per proxy over one persistent connection each, interleaved in blocks of
    BLOCK requests (the order of the proxies rotates every turn), so that every proxy's
    requests meet the same machine: a burst of load slows all of them alike. The first WARM
    requests of each block are not timed (the proxy's caches are cold after the others ran).
    Returns {name: (p50, p99)} in us."""
    names = list(ports)
    conns = {name: connect(ports[name], alpn="http/1.1") for name in names}
    bufs = {name: b"" for name in names}
    times = {name: [] for name in names}
    req = f"GET / HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
    for name in names:  # warm-up, not timed
        for _ in range(100):
            bufs[name] = exchange(conns[name], req, bufs[name])
    turns = -(-n // block)
    for turn in range(turns):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            for j in range(warm + block):
                t0 = time.perf_counter_ns()
                bufs[name] = exchange(conns[name], req, bufs[name])
                if j >= warm:
                    times[name].append((time.perf_counter_ns() - t0) / 1000)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = (ts[len(ts) // 2], ts[int(len(ts) * 0.99)])
    return out


def exchange(s, req, buf):
    """Sends one request and reads one response; returns what was read beyond it."""
    s.sendall(req)
    while True:
        buf += s.recv(4096)
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in buf[:end].decode("latin1").lower().split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":")[1])
            if len(buf) >= end + 4 + length:
                return buf[end + 4 + length:]


def alive(s):
    """Whether the proxy still holds this connection (no EOF, no reset, nothing to read)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False


def hold(port, n, spec=None, host=None, bulk=0):
    """Opens N connections (5 s to connect and handshake each; a proxy out of file descriptors
    leaves them in its backlog), then prints "held K": those still open a second later. With
    HOST, each is an HTTP/1.1 connection that made one keep-alive request first; with BULK,
    each sends BULK bytes (to the backend, which drops them) first."""
    conns = []
    req = f"GET / HTTP/1.1\r\nhost: {host}\r\n\r\n".encode() if host else None
    for _ in range(n):
        try:
            s = connect(port, spec, alpn="http/1.1" if host else None, timeout=5)
            if req:
                exchange(s, req, b"")
            if bulk:
                s.sendall(b"x" * bulk)
            conns.append(s)
        except OSError:
            pass
    time.sleep(1)
    print(f"held {sum(alive(s) for s in conns)}", flush=True)
    sys.stdin.read()


def tree(pids):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    out, todo = [], [int(p) for p in pids]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    print(f"{total / tick:.3f}")


def rss(pids):
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    print(total)


def give_slice(us, pids):
    """Asks for a scheduler slice of `us` microseconds (sched_setattr under SCHED_OTHER, as
    mc-gateway's --sched-slice-us does) for every thread of `pids` and their children, and keeps
    doing so for threads started later, until killed. A refusal ends the run loudly."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    sys_sched_setattr = 314  # x86_64
    attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, us * 1000, 0, 0, 0, 0))
    done = set()
    while True:
        for p in tree(pids):
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for t in tids:
                if t in done:
                    continue
                if libc.syscall(sys_sched_setattr, int(t), attr, 0) != 0:
                    err = ctypes.get_errno()
                    if err == 3:  # ESRCH: the thread ended meanwhile
                        continue
                    sys.exit(f"give-slice: sched_setattr({t}) refused: {os.strerror(err)}")
                done.add(t)
        time.sleep(0.3)


async def serve(reader, writer):
    try:
        first = await reader.read(65536)
        if first.startswith(b"GET "):
            buf = first
            while True:
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
        else:
            while await reader.read(1 << 20):
                pass
    except (ConnectionError, OSError):
        pass
    writer.close()


async def backend(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "backend":
        asyncio.run(backend(int(args[0])))
    elif cmd == "bulk":
        bulk(int(args[0]), int(args[1]), int(args[2]), args[3] if len(args) > 3 else None)
    elif cmd == "latency":
        latency(int(args[0]), int(args[1]), args[2])
    elif cmd == "latency-mix":
        ports = dict(a.split("=", 1) for a in args[4:])
        mixed = latency_mix({k: int(v) for k, v in ports.items()}, int(args[0]), args[1], int(args[2]), int(args[3]))
        for name, (p50, p99) in mixed.items():
            print(f"{name} {p50:.0f} {p99:.0f}")
    elif cmd == "hold":
        hold(int(args[0]), int(args[1]), args[2] if len(args) > 2 else None)
    elif cmd == "hold-http":
        hold(int(args[0]), int(args[1]), host=args[2])
    elif cmd == "hold-bulk":
        hold(int(args[0]), int(args[1]), args[3] if len(args) > 3 else None, bulk=int(args[2]))
    elif cmd == "cpu":
        cpu(args)
    elif cmd == "rss":
        rss(args)
    elif cmd == "give-slice":
        give_slice(int(args[0]), args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
