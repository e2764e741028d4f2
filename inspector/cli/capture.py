"""``inspector capture``: set-up images from the station's own camera, through its config."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import typer

from inspector.cli.app import app
from inspector.cli.errors import fail, user_errors


@app.command()
def capture(
    config: Path = typer.Option(..., "--config", "-c", help="The station's YAML config file."),
    count: int = typer.Option(..., "--count", "-n", min=1, help="Images to capture."),
    out: Path = typer.Option(..., "--out", help="Folder to write the PNG files into."),
    timeout_s: float = typer.Option(
        30.0, min=0.1, help="Give up when no frame arrives for this long."
    ),
) -> None:
    """Grab set-up images (engineer guide, step 1) through the configured source.

    A software-triggered camera is triggered once per image; a hardware-triggered one, a video
    stream or a hot folder delivers what comes. Frames are written losslessly as
    capture-0001.png, ... exactly as the daemon would see them. Stop the line daemon first:
    a camera serves one client at a time. Hot-folder files are read, not moved.
    """
    from inspector.config.station import load_config  # pydantic sections: not at --help
    from inspector.sources import create_source  # watchdog, the sources: not at --help

    with user_errors():
        cfg = load_config(config)
        out.mkdir(parents=True, exist_ok=True)
        source = create_source(cfg.source)
        source.open()
    frames: queue.Queue = queue.Queue(maxsize=4)

    def read() -> None:
        try:
            for frame in source.frames():
                frames.put(frame)
        except Exception as exc:  # a lost device: the main thread says so
            frames.put(exc)
        frames.put(None)

    threading.Thread(target=read, name="capture", daemon=True).start()
    saved, skipped = 0, 0
    try:
        while saved < count:
            if source.triggerable:
                source.trigger(f"capture-{saved + 1:04d}")
            try:
                item = frames.get(timeout=timeout_s)
            except queue.Empty:
                raise fail(
                    f"no frame from the {source.name} source for {timeout_s:g} s; "
                    f"{saved} image(s) saved in {out}"
                ) from None
            if item is None or isinstance(item, Exception):
                why = f": {item}" if item is not None else ""
                raise fail(
                    f"the {source.name} source stopped{why}; {saved} image(s) saved in {out}"
                )
            if item.image is None:
                skipped += 1
                typer.echo(f"skipped a frame: {item.error}", err=True)
                continue
            saved += 1
            path = out / f"capture-{saved:04d}.png"
            if not cv2.imwrite(str(path), item.image):
                raise fail(f"could not write {path}")
    finally:
        source.close()
    typer.echo(f"captured {saved} image(s) from the {source.name} source into {out}")
