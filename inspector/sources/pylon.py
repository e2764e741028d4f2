"""Basler cameras through pypylon: software, hardware or free-run triggering.

Every frame the camera was asked for comes out of ``frames()``: as an image, or as an error
frame carrying the cell id when the buffer failed, the image never came within
``grab_timeout_ms``, or the camera went away. Grabbing uses ``GrabStrategy_OneByOne`` with
``buffers`` buffers, so a burst of triggers queues instead of overwriting.

Software trigger: the daemon calls ``trigger(cell_id, product)`` (from its MQTT thread); the
camera is asked with ``WaitForFrameTriggerReady`` first, so a trigger is never sent while the
camera cannot take it, and the next image is matched to the oldest outstanding trigger. When a
triggered image is overdue the acquisition is restarted, failing the triggers still
outstanding, so a late image can never be given another cell's id.

pypylon is imported on first ``open()``. For the emulated camera set ``PYLON_CAMEMU=N`` before
that first import (tests and the demo do); ``emulation_images`` makes it serve a folder.

Example:
    >>> cfg = PylonSourceConfig(serial="40012345", pixel_format="Mono12")
    >>> camera = PylonSource(cfg)  # open(), then frames() in one thread, trigger() in another
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from inspector.sources.base import (
    Frame,
    Source,
    SourceError,
    SourceSection,
    cell_id_prefix_field,
    new_cell_id,
)
from inspector.sources.bit_depth import pixel_format_bits
from models.image_io import list_images, read_image

log = logging.getLogger(__name__)

KIND = "pylon"

_POLL_MS = 100  # how often a waiting frames() looks at close() and overdue triggers
_MAX_GAP_FRAMES = 100  # error frames for one gap in the block ids, at most
_BIT_DEPTH = {"Mono8": 8, "Mono10": 10, "Mono12": 12}


PixelFormat = Literal[
    "Mono8",
    "Mono10",
    "Mono12",
    "BGR8",
    "RGB8",
    "BayerRG8",
    "BayerBG8",
    "BayerGB8",
    "BayerGR8",
]


class PylonSourceConfig(SourceSection):
    """A Basler camera through pypylon.

    ``serial`` or ``user_id`` selects the camera (neither: the first one found). ``trigger``:
    ``software`` (the daemon triggers one frame per MQTT trigger message), ``hardware``
    (FrameStart on ``trigger_line``) or ``free_run``.
    """

    kind: Literal[KIND] = KIND
    serial: str | None = Field(default=None, description="Camera serial number.")
    user_id: str | None = Field(default=None, description="Camera user id (DeviceUserID).")
    pixel_format: PixelFormat = Field(default="Mono8", description="PixelFormat set on the camera.")
    trigger: Literal["software", "hardware", "free_run"] = Field(
        default="software",
        description="software: a frame per MQTT trigger; hardware: FrameStart on trigger_line.",
    )
    trigger_line: str = Field(default="Line1", description="hardware only: the TriggerSource.")
    trigger_activation: Literal["RisingEdge", "FallingEdge"] = Field(
        default="RisingEdge", description="hardware only: the edge that triggers."
    )
    exposure_us: float | None = Field(
        default=None, gt=0, description="ExposureTime in µs; null: the camera's setting."
    )
    frame_rate: float | None = Field(
        default=None, gt=0, description="free run only: AcquisitionFrameRate in Hz"
    )
    width: int | None = Field(default=None, gt=0, description="Width in px; null: the camera's.")
    height: int | None = Field(default=None, gt=0, description="Height in px; null: the camera's.")
    buffers: int = Field(default=16, ge=2, le=1024, description="MaxNumBuffer")
    grab_timeout_ms: int = Field(
        default=2000, gt=0, description="a triggered frame not here by then is an error frame"
    )
    reconnect_backoff_s: float = Field(
        default=1.0, gt=0, description="First wait before re-opening a lost camera."
    )
    reconnect_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between re-open attempts (back-off)."
    )
    emulation_images: Path | None = Field(
        default=None, description="emulated camera only: folder of images it serves"
    )
    cell_id_prefix: str = cell_id_prefix_field()

    def reconnect_backoff(self) -> tuple[float, float]:
        """``reconnect_backoff_s`` up to ``reconnect_backoff_max_s``."""
        return self.reconnect_backoff_s, self.reconnect_backoff_max_s

    @property
    def takes_ids_from_triggers(self) -> bool:
        """A software-triggered camera grabs each frame for a trigger that names its cell."""
        return self.trigger == "software"


def _pylon() -> tuple[Any, Any]:
    """The pypylon modules (pylon, genicam), imported on first use."""
    from pypylon import genicam, pylon  # optional: the camera SDK, and PYLON_CAMEMU first

    return pylon, genicam


@dataclass
class _Trigger:
    cell_id: str
    product: str | None
    sent: float  # time.monotonic() when the trigger was executed
    deadline: float


class PylonSource(Source):
    """One Basler camera, picked by serial number or user id (else the first one found)."""

    name = KIND

    def __init__(self, cfg: PylonSourceConfig) -> None:
        self.cfg = cfg
        self._camera: Any = None
        self._converter: Any = None
        self._serial = ""
        self._lock = threading.Lock()  # camera calls from trigger() against restarts
        self._pending_lock = threading.Lock()
        self._pending: collections.deque[_Trigger] = collections.deque()
        self._ready: collections.deque[Frame] = collections.deque()  # error frames to hand out
        self._closed = threading.Event()
        self._retrieving = threading.Condition()
        self._in_retrieve = False
        self._last_block: int | None = None
        self._reported_format: str | None = None  # PixelFormat as the open camera reports it

    @property
    def bit_depth(self) -> int:
        """From the camera's reported pixel format once open, the configured one before."""
        return pixel_format_bits(self._reported_format or self.cfg.pixel_format)

    @property
    def triggerable(self) -> bool:
        return self.cfg.trigger == "software"

    @property
    def camera(self) -> Any:
        """The open pypylon ``InstantCamera`` (None when closed), for settings not in the config."""
        return self._camera

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Find the camera, configure it and start grabbing; SourceError if that fails.

        After a device removal the old device object is destroyed and the cameras are
        enumerated afresh, since a removed pylon device cannot be reopened. Back-off between
        attempts is the caller's (``cfg.reconnect_backoff_s``).
        """
        pylon, genicam = _pylon()
        self._release()
        self._closed.clear()
        with self._pending_lock:  # triggers of the previous session will get no image now
            lost, self._pending = list(self._pending), collections.deque()
        for trig in lost:
            self._ready.append(self._error_frame(trig, "camera reopened before the image came"))
        try:
            factory = pylon.TlFactory.GetInstance()
            info = self._pick(list(factory.EnumerateDevices()))
            camera = pylon.InstantCamera(factory.CreateDevice(info))
            camera.Open()
            self._camera = camera
            self._serial = info.GetSerialNumber()
            self._configure(camera, pylon, genicam)
            camera.StartGrabbing(pylon.GrabStrategy_OneByOne)
            self._last_block = None
        except SourceError:
            self._release()
            raise
        except genicam.GenericException as exc:
            self._release()
            raise SourceError(f"camera {self._wanted()}: {_first_line(exc)}") from exc
        log.info(
            "camera %s open, %s, %s trigger", self._serial, self.cfg.pixel_format, self.cfg.trigger
        )

    def close(self) -> None:
        """Stop grabbing and release the camera; a running ``frames()`` returns."""
        self._closed.set()
        with self._retrieving:
            self._retrieving.wait_for(lambda: not self._in_retrieve, timeout=2.0)
        self._release()

    def _release(self) -> None:
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is None:
            return
        _, genicam = _pylon()
        for step in ("StopGrabbing", "Close", "DestroyDevice"):
            try:
                getattr(camera, step)()
            except genicam.GenericException as exc:  # a removed device refuses some of these
                log.debug("camera %s: %s failed: %s", self._serial, step, _first_line(exc))

    # -- triggering -------------------------------------------------------------------------

    def trigger(self, cell_id: str, product: str | None = None) -> None:
        """Take one frame for ``cell_id`` now (software trigger mode only).

        Never raises for a camera fault: the cell then comes out of ``frames()`` as an error
        frame, so the daemon reports it instead of losing it.
        """
        if not self.triggerable:
            raise NotImplementedError(f"camera is in {self.cfg.trigger} mode, not software")
        pylon, genicam = _pylon()
        timeout = self.cfg.grab_timeout_ms
        trig = None
        with self._lock:
            camera = self._camera
            if camera is None:
                self._fail(cell_id, product, "camera not open")
                return
            try:
                if not camera.WaitForFrameTriggerReady(timeout, pylon.TimeoutHandling_Return):
                    self._fail(cell_id, product, f"camera not ready for a trigger in {timeout} ms")
                    return
                now = time.monotonic()
                trig = _Trigger(cell_id, product, now, now + timeout / 1000)
                with self._pending_lock:
                    self._pending.append(trig)
                camera.ExecuteSoftwareTrigger()
            except genicam.GenericException as exc:
                with self._pending_lock:
                    if trig in self._pending:
                        self._pending.remove(trig)
                self._fail(cell_id, product, f"trigger failed: {_first_line(exc)}")

    def _fail(self, cell_id: str, product: str | None, why: str) -> None:
        log.warning("cell %s: %s", cell_id, why)
        self._ready.append(Frame(cell_id, None, product=product, meta=self._meta(), error=why))

    # -- frames -----------------------------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        """Yield frames until ``close()``; SourceError when the camera is lost.

        Triggers still outstanding when the camera is lost or closed come out as error frames
        first, each with its cell id.
        """
        pylon, genicam = _pylon()
        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._closed.is_set():
                yield from self._fail_pending("source closed before the image arrived")
                return
            camera = self._camera
            if camera is None:
                raise SourceError(f"camera {self._wanted()} is not open")
            with self._retrieving:  # close() waits for this section before releasing
                if self._closed.is_set():
                    continue
                # a destroyed device is neither "removed" nor grabbing: RetrieveResult then
                # returns invalid results forever, so a grab that stopped by itself is a loss too
                removed = camera.IsCameraDeviceRemoved() or not camera.IsGrabbing()
                self._in_retrieve = not removed
            if removed:
                yield from self._fail_pending("camera removed")
                raise SourceError(f"camera {self._serial} removed")
            try:
                result = camera.RetrieveResult(self._wait_ms(), pylon.TimeoutHandling_Return)
            except genicam.GenericException as exc:
                if self._closed.is_set():
                    continue
                yield from self._fail_pending(f"grab failed: {_first_line(exc)}")
                raise SourceError(f"camera {self._serial}: {_first_line(exc)}") from exc
            finally:
                with self._retrieving:
                    self._in_retrieve = False
                    self._retrieving.notify_all()
            if result is not None and result.IsValid():
                try:
                    frame = self._frame(result)
                finally:
                    result.Release()
                yield from self._dropped_before(frame.meta["block_id"])
                yield frame
            else:
                yield from self._overdue()

    def _wait_ms(self) -> int:
        """How long RetrieveResult may block: until the next deadline, at most the poll time."""
        with self._pending_lock:
            if not self._pending:
                return _POLL_MS
            left = self._pending[0].deadline - time.monotonic()
        return int(min(max(left * 1000, 1), _POLL_MS))

    def _overdue(self) -> Iterator[Frame]:
        """Error frames when the oldest trigger is past its deadline; restarts the grab."""
        pylon, genicam = _pylon()
        with self._lock:
            with self._pending_lock:
                if not self._pending or self._pending[0].deadline > time.monotonic():
                    return
                late = self._pending.popleft()
                rest = list(self._pending)
                self._pending.clear()
            camera = self._camera
            try:  # a late image must not be taken for the next trigger's
                if camera is not None:
                    camera.StopGrabbing()
                    camera.StartGrabbing(pylon.GrabStrategy_OneByOne)
                    self._last_block = None
            except genicam.GenericException as exc:
                log.warning("camera %s: restart after a lost frame failed: %s", self._serial, exc)
        ms = self.cfg.grab_timeout_ms
        yield self._error_frame(late, f"no image within {ms} ms of the trigger")
        for trig in rest:
            yield self._error_frame(trig, "image discarded: acquisition restarted after a lost one")

    def _dropped_before(self, block_id: int) -> Iterator[Frame]:
        """Error frames for images the camera sent none of (a gap in the block ids).

        With a hardware trigger each missing block was a cell; in free run it is only logged.
        (Software triggers are covered by their deadlines.) A block id that does not grow is a
        counter wrap or restart, not a loss.
        """
        last, self._last_block = self._last_block, block_id
        if last is None or block_id <= last + 1:
            return
        missing = block_id - last - 1
        log.warning("camera %s: %d image(s) lost before block %d", self._serial, missing, block_id)
        if self.cfg.trigger != "hardware":
            return
        for lost in range(last + 1, min(block_id, last + 1 + _MAX_GAP_FRAMES)):
            yield Frame(
                new_cell_id(self.cfg.cell_id_prefix),
                None,
                meta={**self._meta(), "block_id": lost},
                error=f"camera lost the image of block {lost} (buffers full or link overloaded)",
            )

    def _fail_pending(self, why: str) -> Iterator[Frame]:
        with self._pending_lock:
            lost = list(self._pending)
            self._pending.clear()
        while self._ready:
            yield self._ready.popleft()
        for trig in lost:
            yield self._error_frame(trig, why)

    def _error_frame(self, trig: _Trigger, why: str) -> Frame:
        log.warning("cell %s: %s", trig.cell_id, why)
        return Frame(trig.cell_id, None, product=trig.product, meta=self._meta(), error=why)

    def _frame(self, result: Any) -> Frame:
        """The grab result as a Frame, matched to the oldest outstanding trigger."""
        trig = None
        if self.cfg.trigger == "software":
            with self._pending_lock:
                trig = self._pending.popleft() if self._pending else None
        meta = self._meta()
        meta.update(block_id=int(result.BlockID), camera_timestamp=int(result.TimeStamp))
        if trig is not None:
            meta["trigger_to_frame_ms"] = (time.monotonic() - trig.sent) * 1000
        elif self.cfg.trigger == "software":
            meta["untriggered"] = True
        cell_id = trig.cell_id if trig else new_cell_id(self.cfg.cell_id_prefix)
        product = trig.product if trig else None
        if not result.GrabSucceeded():
            why = f"grab failed: {result.ErrorDescription} (0x{result.ErrorCode:x})"
            log.warning("cell %s: %s", cell_id, why)
            return Frame(cell_id, None, product=product, meta=meta, error=why)
        return Frame(
            cell_id,
            self._image(result),
            timestamp=datetime.now(UTC),
            product=product,
            meta=meta,
        )

    def _image(self, result: Any) -> np.ndarray:
        """HxW uint8/uint16 for mono formats, HxWx3 BGR for colour ones."""
        if self.cfg.pixel_format in _BIT_DEPTH:
            return result.Array
        if self._converter is None:
            pylon, _ = _pylon()
            self._converter = pylon.ImageFormatConverter()
            self._converter.OutputPixelFormat = pylon.PixelType_BGR8packed
        return self._converter.Convert(result).Array

    def _meta(self) -> dict:
        fmt = self.cfg.pixel_format
        return {
            "source": self.name,
            "serial": self._serial,
            "pixel_format": fmt,
            "bit_depth": _BIT_DEPTH.get(fmt, 8),
        }

    # -- setup ------------------------------------------------------------------------------

    def _wanted(self) -> str:
        if self.cfg.serial:
            return f"serial {self.cfg.serial}"
        if self.cfg.user_id:
            return f"user id {self.cfg.user_id!r}"
        return "(first found)"

    def _pick(self, devices: list) -> Any:
        """The device info the config asks for; SourceError listing what there is otherwise."""
        for info in devices:
            if self.cfg.serial and info.GetSerialNumber() != self.cfg.serial:
                continue
            if self.cfg.user_id and info.GetUserDefinedName() != self.cfg.user_id:
                continue
            return info
        found = ", ".join(
            f"{d.GetSerialNumber()} ({d.GetUserDefinedName() or 'no user id'})" for d in devices
        )
        raise SourceError(f"no camera with {self._wanted()}; found: {found or 'none'}")

    def _configure(self, camera: Any, pylon: Any, genicam: Any) -> None:
        cfg = self.cfg
        nodes = camera.GetNodeMap()

        def writable(name: str) -> bool:
            node = nodes.GetNode(name)
            return node is not None and genicam.IsWritable(node)

        camera.MaxNumBuffer.Value = cfg.buffers
        if cfg.emulation_images is not None:
            self._serve_folder(camera, writable)
        if cfg.width:
            camera.Width.Value = cfg.width
        if cfg.height:
            camera.Height.Value = cfg.height
        camera.PixelFormat.Value = _pixel_format_name(camera, cfg.pixel_format)
        self._reported_format = str(camera.PixelFormat.Value)
        if cfg.exposure_us is not None:
            for name in ("ExposureTime", "ExposureTimeAbs"):  # SFNC 2 and older names
                if writable(name):
                    getattr(camera, name).Value = cfg.exposure_us
        if writable("AcquisitionMode"):
            camera.AcquisitionMode.Value = "Continuous"
        for selector in camera.TriggerSelector.Symbolics:  # nothing else may hold frames back
            camera.TriggerSelector.Value = selector
            camera.TriggerMode.Value = "Off"
        camera.TriggerSelector.Value = "FrameStart"
        if cfg.trigger == "free_run":
            if cfg.frame_rate is not None:
                camera.AcquisitionFrameRateEnable.Value = True
                name = "AcquisitionFrameRate"
                name = name if writable(name) else "AcquisitionFrameRateAbs"
                getattr(camera, name).Value = cfg.frame_rate
            return
        camera.TriggerMode.Value = "On"
        if cfg.trigger == "software":
            camera.TriggerSource.Value = "Software"
        else:
            if cfg.trigger_line not in camera.TriggerSource.Symbolics:
                raise SourceError(
                    f"camera has no trigger line {cfg.trigger_line!r} "
                    f"(has {', '.join(camera.TriggerSource.Symbolics)})"
                )
            camera.TriggerSource.Value = cfg.trigger_line
            camera.TriggerActivation.Value = cfg.trigger_activation

    def _serve_folder(self, camera: Any, writable: Any) -> None:
        """Make an emulated camera serve the images in ``emulation_images``, sized to them."""
        folder = self.cfg.emulation_images
        if not writable("ImageFilename"):
            raise SourceError("emulation_images is set but the camera is not an emulated one")
        try:
            images = list_images(folder)
            height, width = read_image(images[0]).shape[:2] if images else (0, 0)
        except ValueError as exc:
            raise SourceError(f"emulation_images: {exc}") from exc
        if not images:
            raise SourceError(f"emulation_images: no images in {folder}")
        camera.Width.Value = min(width, camera.Width.Max)
        camera.Height.Value = min(height, camera.Height.Max)
        camera.ImageFilename.Value = str(folder)
        camera.ImageFileMode.Value = "On"
        camera.TestImageSelector.Value = "Off"


def _pixel_format_name(camera: Any, wanted: str) -> str:
    """The camera's name for ``wanted``: older (GigE) models call BGR8 ``BGR8Packed``."""
    offered = camera.PixelFormat.Symbolics
    for name in (wanted, f"{wanted}Packed"):
        if name in offered:
            return name
    raise SourceError(f"camera has no pixel format {wanted} (has {', '.join(offered)})")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
