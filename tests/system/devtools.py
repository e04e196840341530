"""Chromium's DevTools protocol over one page's websocket: the few calls the browser tests share."""

from __future__ import annotations

import json
import urllib.request

import pytest

from .servers import LOOPBACK

__all__ = ["DevTools"]


class DevTools:
    """Commands and JavaScript evaluation on the first page of a Chromium started with
    ``--remote-debugging-port``; tests subclass it for their input gestures."""

    def __init__(self, port: int):
        websocket = pytest.importorskip("websocket", reason="websocket-client drives Chromium's DevTools protocol")
        targets = json.loads(urllib.request.urlopen(f"http://{LOOPBACK}:{port}/json", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The expression's value (a promise is awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()
