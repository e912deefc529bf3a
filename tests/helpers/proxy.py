"""A TCP proxy in front of the database whose replies can be held back, to stop a worker mid-call."""

from __future__ import annotations

import socket
import threading
import time

from tests.helpers.server import HOST


class DelayProxy:
    """Forwards ``HOST:port`` to ``target``; while ``delay`` > 0 each reply waits that long first."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.delay = 0.0
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, dest: socket.socket, reply: bool) -> None:
        try:
            while data := source.recv(65536):
                if reply and self.delay:
                    time.sleep(self.delay)
                dest.sendall(data)
        except OSError:
            pass
        for s in (source, dest):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, url: str) -> str:
        """``url`` (a mongodb:// URL of the target) going through this proxy instead."""
        host, port = self.target
        return url.replace(f"{host}:{port}", f"{HOST}:{self.port}", 1) + ("&" if "?" in url else "?") + \
            "directConnection=true"

    def close(self) -> None:
        for s in self._sockets:
            s.close()
