"""``aistudios-export`` refuses bad arguments at once, with a usage error, before anything boots."""

from __future__ import annotations

import pytest

from aistudios_local.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["local", "--project-id", "65fa6b07dca2e367461a2925", "--api-url", "notaurl"],
        ["local", "--project-id", "65fa6b07dca2e367461a2925", "--api-url", "http://10.0.0.1"],
        ["local", "--project-id", "65fa6b07dca2e367461a2925", "--api-url", "https://h/x?q"],
        ["local", "serve", "--api-url", "ftp://app.aistudios.com"],
        ["local", "batch", "rows.csv", "--api-url", "https://user@app.aistudios.com"],
    ],
)
def test_an_api_url_that_is_not_an_origin_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aistudios_local import stack

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the local stack must not start on a usage error")

    monkeypatch.setattr(stack.LocalStack, "__init__", never)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--api-url" in err and "is not an AI Studios API origin" in err


@pytest.mark.parametrize(
    "url", ["https://app.aistudios.com", "https://app.aistudios.cn:8443/", "http://127.0.0.1:8080"]
)
def test_an_api_origin_is_accepted(url: str) -> None:
    from aistudios_local.cli import api_url

    assert api_url(url) == url
