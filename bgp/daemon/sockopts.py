"""Socket options BGP needs: TCP MD5 signatures (RFC 2385) and the outgoing TTL.

The kernel takes ``struct tcp_md5sig`` (linux/tcp.h): a sockaddr_storage for the peer,
flags, prefix length, key length, ifindex and up to 80 key bytes. With
TCP_MD5SIG_EXT and the prefix flag one key covers a whole listen range.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

TCP_MD5SIG = 14
TCP_MD5SIG_EXT = 32
TCP_MD5SIG_FLAG_PREFIX = 1
TCP_MD5SIG_MAXKEYLEN = 80
_SOCKADDR_STORAGE = 128

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _sockaddr(addr: IPAddress, v6_socket: bool) -> bytes:
    if v6_socket and addr.version == 4:
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    if addr.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + addr.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + addr.packed
        raw += struct.pack("=I", 0)
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def md5sig_struct(
    target: IPAddress | Network, password: str | None, v6_socket: bool = False
) -> tuple[int, bytes]:
    """The (option, value) pair for setsockopt; an empty password removes the key."""
    key = (password or "").encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"password: at most {TCP_MD5SIG_MAXKEYLEN} bytes")
    if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
        addr: IPAddress = target.network_address
        prefixlen = target.prefixlen  # the kernel takes v4-mapped prefixes as IPv4 lengths
        option, flags = TCP_MD5SIG_EXT, TCP_MD5SIG_FLAG_PREFIX
    else:
        addr, prefixlen, option, flags = target, 0, TCP_MD5SIG, 0
    value = _sockaddr(addr, v6_socket) + struct.pack("=BBHi", flags, prefixlen, len(key), 0)
    value += key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    return option, value


def set_md5(sock: socket.socket, target: IPAddress | Network, password: str | None) -> None:
    option, value = md5sig_struct(target, password, sock.family == socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_TCP, option, value)


def set_ttl(sock: socket.socket, ttl: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
