from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.urls import canonical_url, host_of


def test_tracking_parameters_are_removed() -> None:
    url = "https://example.com/a?utm_source=tw&utm_medium=social&fbclid=X1&gclid=Y&id=7"
    assert canonical_url(url) == "https://example.com/a?id=7"


def test_other_known_trackers_are_removed() -> None:
    url = "https://example.com/a?ref=home&ocid=x&at_medium=rss&at_campaign=c&mc_cid=1&mc_eid=2"
    assert canonical_url(url) == "https://example.com/a"


def test_article_identifying_parameters_are_kept_and_sorted() -> None:
    # courlan's strict mode would drop nid and the bare ?12345: two articles would become one.
    assert canonical_url("https://example.com/show?id=123") == "https://example.com/show?id=123"
    assert canonical_url("https://example.com/a?nid=5&cat=2") == "https://example.com/a?cat=2&nid=5"
    assert canonical_url("https://example.com/article.php?12345") == ("https://example.com/article.php?12345")
    assert canonical_url("https://example.com/a?source=x") == "https://example.com/a?source=x"


def test_fragment_is_dropped() -> None:
    assert canonical_url("https://example.com/a#comments") == "https://example.com/a"


def test_scheme_and_host_are_lower_cased() -> None:
    assert canonical_url("HTTPS://News.Example.COM/Path") == "https://news.example.com/Path"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
    ],
)
def test_only_the_default_port_is_dropped(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_arabic_path_raw_and_percent_encoded_are_one_url() -> None:
    raw = "https://example.com/الأخبار/مقال?id=5"
    upper = "https://example.com/%D8%A7%D9%84%D8%A3%D8%AE%D8%A8%D8%A7%D8%B1/%D9%85%D9%82%D8%A7%D9%84?id=5"
    lower = upper.lower().replace("example.com", "Example.com")
    assert canonical_url(raw) == canonical_url(upper) == canonical_url(lower) == upper


def test_arabic_query_value_raw_and_encoded_are_one_url() -> None:
    assert canonical_url("https://example.com/s?q=غزة") == canonical_url("https://example.com/s?q=%d8%ba%d8%b2%d8%a9")


def test_escapes_that_carry_meaning_stay_encoded() -> None:
    assert canonical_url("https://example.com/a%2fb") == "https://example.com/a%2Fb"
    assert canonical_url("https://example.com/s?q=a%2Bb&r=a+b") == "https://example.com/s?q=a%2Bb&r=a+b"
    assert canonical_url("https://example.com/%7Euser") == "https://example.com/~user"


def test_idn_host_raw_and_punycode_are_one_url() -> None:
    assert canonical_url("https://مثال.مصر/خبر") == canonical_url("https://XN--MGBH0FB.xn--wgbh1c/خبر")
    assert host_of("https://مثال.مصر/خبر") == "xn--mgbh0fb.xn--wgbh1c"


def test_trailing_question_mark_and_empty_path() -> None:
    assert canonical_url("https://example.com/a?") == "https://example.com/a"
    assert canonical_url("https://example.com") == "https://example.com/"


def test_dot_segments_and_credentials_are_removed() -> None:
    assert canonical_url("https://user:pw@example.com/a/./b/../c") == "https://example.com/a/c"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a", "mailto:x@example.com", "javascript:alert(1)", "/relative/path",
            "https:///no-host", "https://example.com:99999/", "https://exa mple.com/"]
)  # fmt: skip
def test_non_http_or_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        canonical_url(url)


def test_host_of_drops_port_and_case() -> None:
    assert host_of("https://WWW.Example.com:8443/x?y=1") == "www.example.com"


# Pieces of URLs as feeds write them: plain and reserved ASCII, raw Arabic, escapes in both cases,
# stray "%", dot segments.
_pieces = [*"abcXYZ019-._~!$&'()*+,;=:@%/ ", *"الأخبارغزة", "%2F", "%d8%a7", "%D8%A7", "%41", "..", "./"]
_segment = st.lists(st.sampled_from(_pieces), max_size=12).map("".join)
_query_key = st.sampled_from(["id", "utm_source", "fbclid", "p", "q", "ref", "Tag", "غ", "a%3Db", ""])
_urls = st.builds(
    lambda scheme, host, port, path, query, fragment: f"{scheme}://{host}{port}/{path}{query}{fragment}",
    st.sampled_from(["http", "https", "HTTP", "hTTps"]),
    st.sampled_from(["example.com", "News.Example.COM", "مثال.مصر", "xn--mgbh0fb.xn--wgbh1c", "127.0.0.1"]),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    _segment,
    st.lists(st.tuples(_query_key, _segment), max_size=4).map(
        lambda pairs: ("?" + "&".join(f"{k}={v.replace('&', '')}" for k, v in pairs)) if pairs else ""
    ),
    st.sampled_from(["", "#", "#top", "#!/x?y=1"]),
)


@given(_urls)
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert once.isascii()
    assert "#" not in once
    assert "utm_source" not in once and "fbclid" not in once
