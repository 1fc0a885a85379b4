"""A trivial keep-alive HTTP server (asyncio, uvloop when installed): every request gets the same
small JSON answer. The benchmark points its load generator at it to measure the *client's*
ceiling, so a reader can see the load generator is not what limits the numbers.

    python -m bench.echo_server PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

ANSWER = b'{"predictions": [0.5]}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(RESPONSE)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        import uvloop

        uvloop.run(serve(int(args[0])))
    except ImportError:
        asyncio.run(serve(int(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
