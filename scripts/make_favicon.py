"""Draws the portal's emblem (a gate, white on the state green) as favicon.ico and favicon.svg.

Run once when the emblem changes: ``python scripts/make_favicon.py``; both files are committed
under dargah/web/static/. Needs nothing beyond the standard library.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

GREEN = (11, 90, 63)
STATIC = Path(__file__).resolve().parent.parent / "dargah" / "web" / "static"
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#0b5a3f"/>'
    '<path d="M9 26V15a7 7 0 0 1 14 0v11h-4V15a3 3 0 0 0-6 0v11z" fill="#fff"/></svg>\n'
)


def inside_arch(x: float, y: float, r: float, half: float) -> bool:
    """Within the shape bounded by a half-width ``half`` column capped by a circle of ``r``."""
    if y >= 15:
        return abs(x - 16) <= half and y <= 26
    return math.hypot(x - 16, y - 15) <= r


def pixel(x: int, y: int) -> tuple[int, int, int, int]:
    cx, cy = x + 0.5, y + 0.5
    rx = min(cx, 32 - cx)
    ry = min(cy, 32 - cy)
    if rx < 7 and ry < 7 and math.hypot(7 - rx, 7 - ry) > 7:
        return (0, 0, 0, 0)
    if inside_arch(cx, cy, 7, 7) and not inside_arch(cx, cy, 3, 3):
        return (255, 255, 255, 255)
    return (*GREEN, 255)


def png(size: int = 32) -> bytes:
    raw = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def ico(image: bytes, size: int = 32) -> bytes:
    head = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(image), 6 + 16)
    return head + entry + image


if __name__ == "__main__":
    (STATIC / "favicon.ico").write_bytes(ico(png()))
    (STATIC / "favicon.svg").write_text(SVG, encoding="utf-8")
    print("wrote", STATIC / "favicon.ico", "and", STATIC / "favicon.svg")
