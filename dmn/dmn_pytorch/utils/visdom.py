"""Optional live plots on a visdom server; any failure turns plotting off with one warning, never stops training."""
from __future__ import annotations

import logging
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

# The three line plots the original meant to draw (it only created `val_plt`, so `iteration_plt` raised KeyError).
PLOTS = {
    "iteration_plt": {"xlabel": "Iteration", "ylabel": "Loss", "title": "Training loss per iteration"},
    "epoch_plt": {"xlabel": "Epoch", "ylabel": "Loss", "title": "Epoch training loss"},
    "val_plt": {"xlabel": "Epoch", "ylabel": "IoU", "title": "Current Model IoU Value"},
}


def parse_server(url: str, port: int | None) -> tuple[str, int]:
    """('http://host', port) from ``--visdom`` (a host or URL) and ``--visdom-port`` (else the URL's port, else 80)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    return f"{parsed.scheme}://{parsed.hostname}", port or parsed.port or 80


class VisdomPlots:
    def __init__(self, url: str, port: int | None, env: str):
        self.env = env
        self.vis = None
        server, port = parse_server(url, port)
        try:
            from visdom import Visdom

            vis = Visdom(server=server, port=port, env=env, use_incoming_socket=False, raise_exceptions=True)
            if not vis.check_connection(timeout_seconds=3):
                raise ConnectionError(f"no visdom server at {server}:{port}")
            self.vis = vis
        except Exception as err:  # noqa: BLE001 - visdom is optional: any failure only disables plotting
            logger.warning("visdom disabled (%s); training continues without plots", err)
        self.windows: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.vis is not None

    def append(self, name: str, x: float, y: float) -> None:
        if self.vis is None:
            return
        try:
            if name not in self.windows:
                self.windows[name] = self.vis.line(X=[x], Y=[y], env=self.env, opts=PLOTS[name])
            else:
                self.vis.line(X=[x], Y=[y], win=self.windows[name], env=self.env, update="append")
        except Exception as err:  # noqa: BLE001
            logger.warning("visdom disabled after a failed update (%s); training continues", err)
            self.vis = None

    def images(self, images, caption: str) -> None:
        if self.vis is None:
            return
        try:
            self.vis.images(images, env=self.env, opts={"caption": caption})
        except Exception as err:  # noqa: BLE001
            logger.warning("visdom disabled after a failed update (%s)", err)
            self.vis = None
