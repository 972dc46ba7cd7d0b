"""The download-URL guard: what may be fetched, decided without any connection or DNS query."""

from __future__ import annotations

import pytest

from aistudios_export.errors import ConfigurationError, ForbiddenDownloadUrl
from aistudios_export.urlguard import CheckedUrl, UrlPolicy, check_url, redact_url

PUBLIC_IP = "93.184.216.34"


class FakeResolver:
    """Answers from a table and records every lookup; no DNS query is ever made."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


def policy(table: dict[str, list[str]] | None = None, origin: str | None = None) -> UrlPolicy:
    return UrlPolicy(trusted_origin=origin, resolver=FakeResolver(table))


def refused(url: str, pol: UrlPolicy) -> str:
    with pytest.raises(ForbiddenDownloadUrl) as info:
        check_url(url, pol)
    return str(info.value)


def test_https_to_a_public_host_is_allowed() -> None:
    resolver = FakeResolver({"cdn.example.com": [PUBLIC_IP, "2606:2800:220:1::1"]})
    check_url("https://cdn.example.com/v.mp4?X-Amz-Signature=s3cr3t", UrlPolicy(resolver=resolver))
    assert resolver.calls == [("cdn.example.com", 443)]


@pytest.mark.parametrize(
    ("url", "origin", "expected"),
    [
        (
            "https://cdn.example.com/v",
            None,
            ("https", "cdn.example.com", 443, (PUBLIC_IP, "2606::1")),
        ),
        ("https://[2606:0::1]:8443/v", None, ("https", "2606:0::1", 8443, ("2606::1",))),
        (
            "http://LOCALHOST:9/v",
            "http://localhost:9",
            ("http", "localhost", 9, ("127.0.0.1", "::1")),
        ),
        ("http://[::1]:9/v", "http://[::1]:9", ("http", "::1", 9, ("::1",))),
    ],
)
def test_the_checked_addresses_are_returned_for_the_connection(
    url: str, origin: str | None, expected: tuple[str, str, int, tuple[str, ...]]
) -> None:
    resolver = FakeResolver({"cdn.example.com": [PUBLIC_IP, "2606:0:0::1%eth0"]})
    checked = check_url(url, UrlPolicy(trusted_origin=origin, resolver=resolver))
    assert checked == CheckedUrl(url, *expected)


def test_explicit_port_is_passed_to_the_resolver() -> None:
    resolver = FakeResolver({"cdn.example.com": [PUBLIC_IP]})
    check_url("https://cdn.example.com:8443/v.mp4", UrlPolicy(resolver=resolver))
    assert resolver.calls == [("cdn.example.com", 8443)]


def test_public_ip_literals_are_allowed_without_resolving() -> None:
    resolver = FakeResolver()
    check_url(f"https://{PUBLIC_IP}/v.mp4", UrlPolicy(resolver=resolver))
    check_url("https://[2606:4700:4700::1111]/v.mp4", UrlPolicy(resolver=resolver))
    check_url("https://[::ffff:8.8.8.8]/v.mp4", UrlPolicy(resolver=resolver))
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://cdn.example.com/v.mp4", "only https is allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("ftp://cdn.example.com/v.mp4", "scheme 'ftp' is not allowed"),
        ("gopher://cdn.example.com/", "scheme 'gopher' is not allowed"),
        ("cdn.example.com/v.mp4", "scheme '(none)' is not allowed"),
        ("https://user:pass@cdn.example.com/v.mp4", "user info"),
        ("https://user@cdn.example.com/v.mp4", "user info"),
        ("https://cdn.example.com\\@127.0.0.1/", "user info"),
        ("https:///v.mp4", "no host"),
        ("https://cdn.example.com:99999/", "malformed"),
        ("https://[::1/", "malformed"),
        ("https://exa%6dple.com/", "characters"),
        ("https://bücher.example/", "characters"),
    ],
)
def test_malformed_or_unsafe_urls_are_refused(url: str, reason: str) -> None:
    resolver = FakeResolver({"cdn.example.com": [PUBLIC_IP]})
    assert reason in refused(url, UrlPolicy(resolver=resolver))


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
        "1.2.3.4.5",
    ],
)
def test_non_canonical_ip_literals_are_refused(host: str) -> None:
    resolver = FakeResolver()
    message = refused(f"https://{host}/v.mp4", UrlPolicy(resolver=resolver))
    assert "canonical dotted quads" in message
    assert resolver.calls == []


def test_decimal_ip_over_http_is_refused() -> None:
    assert "only https" in refused("http://2130706433/", policy())


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "non-public"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("240.0.0.1", "reserved"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:169.254.169.254]", "cloud metadata"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[2002:7f00:1::]", "loopback"),  # 6to4 around 127.0.0.1
        ("[64:ff9b::a9fe:a9fe]", "cloud metadata"),  # NAT64 around 169.254.169.254
    ],
)
def test_non_public_ip_literals_are_refused(host: str, kind: str) -> None:
    resolver = FakeResolver()
    assert f" {kind} address" in refused(f"https://{host}/v.mp4", UrlPolicy(resolver=resolver))
    assert resolver.calls == []


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.5.4", "192.168.0.10", "127.0.0.1", "169.254.169.254", "::1"]
)
def test_names_resolving_to_non_public_addresses_are_refused(address: str) -> None:
    message = refused(
        "https://internal.example.com/v.mp4", policy({"internal.example.com": [address]})
    )
    assert f"address {address} is a" in message


def test_a_name_with_one_public_and_one_private_address_is_refused() -> None:
    pol = policy({"mixed.example.com": [PUBLIC_IP, "10.0.0.5"]})
    assert "address 10.0.0.5 is a private address" in refused("https://mixed.example.com/", pol)


def test_unresolvable_or_empty_resolution_is_refused() -> None:
    assert "does not resolve" in refused("https://nowhere.example.com/", policy())
    assert "does not resolve" in refused(
        "https://empty.example.com/", policy({"empty.example.com": []})
    )


def test_refusal_messages_redact_the_url() -> None:
    url = "http://alice:hunter2@cdn.example.com/v.mp4?X-Amz-Signature=s3cr3t#frag"
    message = refused(url, policy())
    assert "http://cdn.example.com/v.mp4" in message
    for secret in ("alice", "hunter2", "s3cr3t", "frag", "Signature"):
        assert secret not in message


# --- the trusted origin -------------------------------------------------------------


def test_the_trusted_origin_is_allowed_over_http_without_resolving() -> None:
    resolver = FakeResolver()
    pol = UrlPolicy(trusted_origin="http://127.0.0.1:8080", resolver=resolver)
    check_url("http://127.0.0.1:8080/videos/1.mp4?sig=abc", pol)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("origin", "url"),
    [
        ("http://127.0.0.1", "http://127.0.0.1:80/v.mp4"),
        ("https://localhost", "https://LOCALHOST:443/v.mp4"),
        ("http://[::1]:9000/", "http://[::1]:9000/v.mp4"),
    ],
)
def test_the_trusted_origin_matches_with_default_ports_normalised(origin: str, url: str) -> None:
    check_url(url, policy(origin=origin))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:8080/v.mp4",
        "http://127.0.0.1:8081/v.mp4",
        "http://127.0.0.1/v.mp4",
        "https://127.0.0.1:8080/v.mp4",
        "http://localhost:8080/v.mp4",
        "http://[::1]:8080/v.mp4",
        "http://[::ffff:127.0.0.1]:8080/v.mp4",
        "http://2130706433:8080/v.mp4",
        "http://user@127.0.0.1:8080/v.mp4",
        "file://127.0.0.1:8080/etc/passwd",
        "ftp://127.0.0.1:8080/v.mp4",
    ],
)
def test_near_misses_of_the_trusted_origin_are_refused(url: str) -> None:
    refused(url, policy(origin="http://127.0.0.1:8080"))


def test_localhost_origin_does_not_admit_127_0_0_1() -> None:
    refused("http://127.0.0.1:8080/v.mp4", policy(origin="http://localhost:8080"))


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.2:8080",
        "http://10.0.0.1:8080",
        "http://example.com",
        "http://127.0.0.1:8080/path",
        "http://127.0.0.1:8080?q=1",
        "http://127.0.0.1:8080#f",
        "http://user:pw@127.0.0.1:8080",
        "ftp://127.0.0.1:8080",
        "file:///tmp",
        "127.0.0.1:8080",
        "http://127.0.0.1:port",
        "http://2130706433",
    ],
)
def test_bad_trusted_origins_are_configuration_errors(origin: str) -> None:
    with pytest.raises(ConfigurationError, match="trusted download origin"):
        UrlPolicy.from_trusted_origin(origin)
    with pytest.raises(ConfigurationError):
        UrlPolicy(trusted_origin=origin)


@pytest.mark.parametrize("origin", [None, "", "  "])
def test_no_trusted_origin_means_no_exception(origin: str | None) -> None:
    pol = UrlPolicy.from_trusted_origin(origin)
    assert pol.trusted_origin is None
    refused("http://127.0.0.1:8080/v.mp4", pol)


def test_from_trusted_origin_keeps_a_good_origin() -> None:
    assert UrlPolicy.from_trusted_origin(" http://127.0.0.1:8080 ").trusted_origin == (
        "http://127.0.0.1:8080"
    )


# --- redaction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://cdn.example.com/a/b.mp4?X-Amz-Signature=s3cr3t",
            "https://cdn.example.com/a/b.mp4",
        ),
        ("https://u:p@cdn.example.com:8443/v.mp4#frag", "https://cdn.example.com:8443/v.mp4"),
        ("http://[::1]:9000/v.mp4?token=t", "http://[::1]:9000/v.mp4"),
        ("https://cdn.example.com", "https://cdn.example.com"),
        ("https://[::1/", "<unparseable URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_the_default_resolver_reads_the_system_resolver_and_refuses_loopback() -> None:
    # "localhost" resolves from the hosts file: no DNS query leaves the machine.
    pol = UrlPolicy()
    assert {"127.0.0.1", "::1"} & set(pol.resolver("localhost", 443))
    assert "loopback address" in refused("https://localhost/v.mp4", pol)
