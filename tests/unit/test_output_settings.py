"""OutputSettings: the maximum video size a download may announce or deliver."""

from __future__ import annotations

import pytest

from aistudios_export.errors import ConfigurationError
from aistudios_export.settings import GIB, MAX_VIDEO_SIZE_GIB, OutputSettings

BASE = {"OUTPUT_BUCKET": "videos"}


def test_the_maximum_video_size_defaults_to_50_gib() -> None:
    assert OutputSettings.from_env(BASE).max_video_size == 50 * GIB


def test_the_maximum_video_size_is_read_in_gib() -> None:
    settings = OutputSettings.from_env({**BASE, MAX_VIDEO_SIZE_GIB: " 7 "})
    assert settings.max_video_size == 7 * GIB


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "ten", "5121"])
def test_a_bad_maximum_video_size_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{MAX_VIDEO_SIZE_GIB} must be a whole number"):
        OutputSettings.from_env({**BASE, MAX_VIDEO_SIZE_GIB: value})
