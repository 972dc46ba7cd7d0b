"""An in-process AI Studios v3 API simulator with per-project fault injection.

It speaks the documented endpoints (token, export, progress, get project) plus a download host of
signed, streamed MP4s, on a loopback port in a daemon thread. A frozen `Scenario` per project makes
every behaviour the exporter must survive reproducible over real HTTP: stalls, failures, throttling,
malformed answers, resets, missing or expiring download URLs, cut downloads, token revocation.

The package's rooms: `scenario` (what a project does), `state` (what the account knows),
`endpoints` (how a request changes it), `video` (the bytes served), `server` (HTTP on loopback)
and `facade` (`AiStudiosSimulator`, the one object tests use).

Run it standalone with ``python -m aistudios_local.simulator [--port N]``.
"""

from aistudios_local.simulator.facade import AiStudiosSimulator, main
from aistudios_local.simulator.messages import Call
from aistudios_local.simulator.scenario import Scenario
from aistudios_local.simulator.state import DEFAULT_APP_ID, DEFAULT_USER_KEY, NO_PROJECT
from aistudios_local.simulator.video import (
    DEFAULT_VIDEO_SIZE,
    iter_video,
    video_bytes,
    video_sha256,
)

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_USER_KEY",
    "DEFAULT_VIDEO_SIZE",
    "NO_PROJECT",
    "AiStudiosSimulator",
    "Call",
    "Scenario",
    "iter_video",
    "main",
    "video_bytes",
    "video_sha256",
]
