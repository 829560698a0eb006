"""A hostile web site for the tests, and a guard that sees every outgoing connection.

``HostileSite`` is a real ``ThreadingHTTPServer`` on 127.0.0.1, port 0, whose named routes (``ROUTES``)
misbehave the ways real feeds and pages do: mislabelled and legacy encodings, XML entities and DTDs,
decompression and entity bombs, endless bodies and headers, trickling and hanging servers, malformed
and looping redirects, odd item links, duplicate guids, absurd dates, HTML served as a feed. It also
serves well-behaved Arabic article pages (``/story/<n>``) and feeds, so that a test can check the good
work next to the bad still gets done. Tests add their own routes (``route``, ``static``,
``redirect_to``, ``feed``). Slow handlers stop when the site stops (or after ``MAX_STALL`` seconds),
so a test never leaves a thread behind and a test run without a fix fails instead of hanging.

``ConnectionAudit`` records every ``socket.connect`` the process makes while it is active (through an
audit hook: nothing is patched, nothing can go around it) and blocks any that leaves loopback, so
that "no request reached a refused address" is an assertion about sockets, not about our own code.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
import ssl
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], None]
# The longest a slow handler keeps going, gate or not.
MAX_STALL = 10.0


# --- every connection the process makes --------------------------------------------------------


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class ConnectionAudit:
    """Every TCP/UDP ``connect`` made by any thread while active, as (host, port). Connections that
    leave loopback are recorded and then refused (``PermissionError``), so a test can never reach a
    real metadata service or the internet, and a leak shows as an entry in ``outside_loopback``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections: list[tuple[str, int]] = []

    def __enter__(self) -> ConnectionAudit:
        with _audits_lock:
            _audits.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _audits_lock:
            _audits.remove(self)

    def record(self, host: str, port: int) -> None:
        with self._lock:
            self.connections.append((host, port))

    @property
    def outside_loopback(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(h, p) for h, p in self.connections if not _is_loopback(h)]

    def to_port(self, port: int) -> list[tuple[str, int]]:
        with self._lock:
            return [(h, p) for h, p in self.connections if p == port]


_audits: list[ConnectionAudit] = []
_audits_lock = threading.Lock()


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _audits:
        return
    address = args[1]
    if not isinstance(address, tuple):  # a Unix socket path
        return
    host, port = str(address[0]), int(address[1])
    with _audits_lock:
        active = list(_audits)
    for audit in active:
        audit.record(host, port)
    if not _is_loopback(host):
        raise PermissionError(f"test network guard: connection to {host}:{port} blocked")


# Audit hooks cannot be removed: one for the whole process, doing nothing while no audit is active.
sys.addaudithook(_on_audit)


def fake_dns(answers: Mapping[str, Sequence[str] | Callable[[], Sequence[str]]]) -> Callable[..., Any]:
    """A ``socket.getaddrinfo`` for ``monkeypatch``: the names in ``answers`` resolve to the addresses
    given (or returned, call after call), address literals resolve as usual, and every other name
    fails at once (no test waits on a real DNS server)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in answers:
            given = answers[name]
            addresses = given() if callable(given) else given
            out = []
            for text in addresses:
                family = socket.AF_INET6 if ":" in text else socket.AF_INET
                sockaddr = (text, int(port), 0, 0) if family == socket.AF_INET6 else (text, int(port))
                out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return out
        try:
            return real(host, port, *args, **{**kwargs, "flags": socket.AI_NUMERICHOST})
        except socket.gaierror:
            pass
        if name == "localhost":
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"fake DNS: no such name {name!r}")

    return getaddrinfo


# --- content ------------------------------------------------------------------------------------

SENTENCES = [
    "قالت مصادر محلية إن فرق الإغاثة واصلت عملها طوال الليل في الأحياء التي غمرتها مياه الأمطار الغزيرة",
    "وأضافت أن الدفاع المدني أجلى عشرات العائلات من المنازل القريبة من مجرى النهر بعد ارتفاع منسوب المياه",
    "ودعت السلطات السكان إلى تجنب التنقل غير الضروري حتى تتحسن الأحوال الجوية خلال الأيام المقبلة",
    "وافتتحت وزارة التربية مدرسة جديدة في الريف الشمالي تتسع لأكثر من خمسمئة طالب وطالبة",
    "وأعلن الاتحاد المحلي لكرة القدم عن مواعيد الموسم الجديد بعد اجتماع مطول مع ممثلي الأندية",
    "وشهدت أسواق المدينة القديمة إقبالا كبيرا من الزوار مع بداية العطلة الصيفية وارتفاع درجات الحرارة",
    "وقال مدير المستشفى إن القسم الجديد سيستقبل المرضى ابتداء من الشهر المقبل بعد تجهيزه بالكامل",
    "وأكد خبراء الزراعة أن محصول القمح هذا العام يفوق محصول العام الماضي بفضل الأمطار المبكرة",
    "ونظمت جمعية ثقافية معرضا للكتاب شارك فيه عشرات الناشرين من مختلف المدن والبلدات",
    "وأشار تقرير رسمي إلى تحسن ملحوظ في خدمات النقل العام بعد إضافة خطوط جديدة للحافلات",
    "وتستعد البلدية لإطلاق حملة نظافة واسعة تشمل الحدائق العامة والشوارع الرئيسية في المدينة",
    "وذكر مسؤول في قطاع الكهرباء أن ساعات التقنين ستتقلص تدريجيا مع دخول محطة التوليد الجديدة الخدمة",
]


def story_title(n: int) -> str:
    return f"خبر رقم {n}: {SENTENCES[n % len(SENTENCES)].split()[0]} {SENTENCES[(n + 5) % len(SENTENCES)][:40]}"


def story_paragraphs(n: int) -> list[str]:
    """Three paragraphs of plain Arabic news text, different for every ``n``."""
    picked = [SENTENCES[(n * 7 + i * 5) % len(SENTENCES)] for i in range(6)]
    return [
        f"{picked[0]}، بحسب ما نقلته وكالة الأنباء في تقريرها رقم {n}. {picked[1]}.",
        f"{picked[2]}. {picked[3]}.",
        f"{picked[4]}. {picked[5]}، وذلك في اليوم {n} من الشهر.",
    ]


def article_html(n: int, *, meta_charset: str | None = "utf-8") -> str:
    meta = f'<meta charset="{meta_charset}">' if meta_charset else ""
    body = "".join(f"<p>{p}</p>" for p in story_paragraphs(n))
    return (
        f'<!DOCTYPE html><html lang="ar" dir="rtl"><head>{meta}<title>{story_title(n)}</title></head>'
        f"<body><nav>الرئيسية | سياسة | اقتصاد</nav><article><h1>{story_title(n)}</h1>{body}</article>"
        "<footer>جميع الحقوق محفوظة</footer></body></html>"
    )


@dataclass(frozen=True, slots=True)
class Item:
    link: str
    title: str = ""
    description: str = "موجز قصير"  # too short to stand in for the page: a page failure is visible
    guid: str | None = None
    pub_date: str | None = None
    raw_link: bool = False  # the link goes into the XML as it is (no escaping)


def rss(items: Sequence[Item], *, encoding: str = "utf-8", prolog: str = "", title: str = "موقع معاد") -> str:
    """An RSS 2.0 document (``prolog`` goes between the XML declaration and the root element)."""
    parts = []
    for n, item in enumerate(items):
        link = item.link if item.raw_link else escape(item.link, quote=False)
        extra = f"<guid>{escape(item.guid)}</guid>" if item.guid is not None else ""
        extra += f"<pubDate>{item.pub_date}</pubDate>" if item.pub_date is not None else ""
        parts.append(
            f"<item><title>{item.title or f'بند {n}'}</title><link>{link}</link>"
            f"<description>{escape(item.description)}</description>{extra}</item>"
        )
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n' if encoding else ""
    return (
        f'{declaration}{prolog}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>http://hostile.example/</link>\n{''.join(parts)}\n</channel></rss>\n"
    )


@dataclass(frozen=True, slots=True)
class Route:
    """One named hostile behaviour, for the catalogue."""

    path: str
    what: str


@dataclass(slots=True)
class _State:
    gate: threading.Event = field(default_factory=threading.Event)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on hostile routes (size cap, timeouts): expected, not an error.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


# Compressed once per process: 50 MB of zeros inflating from about 50 KB.
_BOMBS: dict[str, bytes] = {}


def _bomb(kind: str) -> bytes:
    if kind not in _BOMBS:
        zeros = b"\0" * 50_000_000
        _BOMBS[kind] = gzip.compress(zeros, compresslevel=9) if kind == "gzip" else zlib.compress(zeros, 9)
    return _BOMBS[kind]


class HostileSite:
    """The hostile web site. ``ROUTES`` lists its named routes; ``url(path)`` makes an absolute URL."""

    def __init__(self, *, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: a certificate and its key; the site then speaks HTTPS."""
        self._state = _State()
        self._routes: dict[str, Handler] = {}
        self._prefixes: dict[str, Callable[[BaseHTTPRequestHandler, str], None]] = {}
        self._fresh = 0
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site._serve(self)

        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        # A short poll interval: stop() waits for it, and tests start and stop many sites.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-site", daemon=True
        )
        self.catalogue: dict[str, Route] = {}
        self._install()

    # --- lifecycle ---

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def gate(self) -> threading.Event:
        """Set when the site stops: slow handlers give up."""
        return self._state.gate

    def start(self) -> HostileSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> HostileSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, path: str) -> int:
        """Requests received for ``path`` (query included if the request had one)."""
        with self._state.lock:
            return self._state.hits[path]

    @property
    def requested(self) -> list[str]:
        with self._state.lock:
            return list(self._state.hits)

    # --- adding routes ---

    def route(self, path: str, handler: Handler, what: str = "") -> str:
        self._routes[path] = handler
        if what:
            self.catalogue[path] = Route(path, what)
        return self.url(path)

    def static(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        what: str = "",
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        fixed = dict(headers or {"Content-Type": "text/html; charset=utf-8"})
        return self.route(path, lambda req: send(req, status, fixed, data), what)

    def raw(self, path: str, response: bytes, what: str = "") -> str:
        """Answer with exactly these bytes (status line, headers, body), then close."""
        return self.route(path, lambda req: _raw(req, response), what)

    def redirect(self, path: str, location: bytes | str, *, status: int = 302, what: str = "") -> str:
        loc = location.encode("utf-8", "surrogateescape") if isinstance(location, str) else location
        return self.raw(path, b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % (status, loc), what)

    def redirect_to(self, target: bytes | str, *, status: int = 302) -> str:
        """A fresh route redirecting to ``target`` (sent as it is, malformed or not)."""
        self._fresh += 1
        return self.redirect(f"/to/{self._fresh}", target, status=status)

    def feed(self, path: str, items: Sequence[Item] | Sequence[str], *, content_type: str = "", what: str = "") -> str:
        """A well-formed RSS feed at ``path`` whose items link to ``items`` (URLs or ``Item``s)."""
        entries = [i if isinstance(i, Item) else Item(i) for i in items]
        ctype = content_type or "application/rss+xml; charset=utf-8"
        return self.static(path, rss(entries), headers={"Content-Type": ctype}, what=what)

    # --- serving ---

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        with self._state.lock:
            self._state.hits[req.path] += 1
        path = req.path.split("?")[0]
        handler = self._routes.get(req.path) or self._routes.get(path)
        if handler is not None:
            handler(req)
            return
        for prefix, prefixed in self._prefixes.items():
            if path.startswith(prefix):
                prefixed(req, path[len(prefix) :])
                return
        send(req, 404, {"Content-Type": "text/html; charset=utf-8"}, b"<html><body>404</body></html>")

    def _stall(self, seconds: float = MAX_STALL) -> Iterator[None]:
        """Yields every 50 ms until the site stops or ``seconds`` pass."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._state.gate.wait(0.05):
            yield

    # --- the catalogue ---

    def _install(self) -> None:
        self._prefixes["/story/"] = self._story
        self._prefixes["/redirect/chain/"] = self._chain
        self._install_encodings()
        self._install_xml()
        self._install_sizes()
        self._install_slow()
        self._install_redirects()
        self._install_feeds()

    def _story(self, req: BaseHTTPRequestHandler, rest: str) -> None:
        n = int(rest) if rest.isdigit() else 0
        send(req, 200, {"Content-Type": "text/html; charset=utf-8"}, article_html(n).encode())

    def _chain(self, req: BaseHTTPRequestHandler, rest: str) -> None:
        n = int(rest) if rest.isdigit() else 0
        _raw(req, b"HTTP/1.1 302 Found\r\nLocation: /redirect/chain/%d\r\nContent-Length: 0\r\n\r\n" % (n + 1))

    def _install_encodings(self) -> None:
        latin = {"Content-Type": "text/html; charset=ISO-8859-1"}
        self.static("/enc/cp1256-as-latin1.html", article_html(201, meta_charset=None).encode("cp1256"),
                    headers=latin, what="Windows-1256 page labelled ISO-8859-1")  # fmt: skip
        self.static("/enc/iso-8859-6-as-latin1.html", article_html(202, meta_charset=None).encode("iso-8859-6"),
                    headers=latin, what="ISO-8859-6 page labelled ISO-8859-1")  # fmt: skip
        self.static("/enc/iso-8859-6.html", article_html(203, meta_charset=None).encode("iso-8859-6"),
                    headers={"Content-Type": "text/html; charset=ISO-8859-6"}, what="ISO-8859-6 page")  # fmt: skip
        self.static("/enc/utf16le-no-bom.html", article_html(204, meta_charset="utf-8").encode("utf-16-le"),
                    headers={"Content-Type": "text/html; charset=utf-8"},
                    what="UTF-16LE page without BOM, labelled UTF-8")  # fmt: skip
        self.static("/enc/utf16be-no-bom.html", article_html(205, meta_charset=None).encode("utf-16-be"),
                    headers={"Content-Type": "text/html"}, what="UTF-16BE page without BOM nor label")  # fmt: skip
        self.static("/enc/bogus-charset.html", article_html(206, meta_charset="base64").encode(),
                    headers={"Content-Type": "text/html; charset=undefined"},
                    what="UTF-8 page labelled with non-text codecs")  # fmt: skip
        feed_items = [Item(self.url(f"/story/{n}"), title=story_title(n)) for n in (211, 212)]
        self.static("/enc/cp1256-as-latin1.xml", rss(feed_items, encoding="").encode("cp1256"),
                    headers={"Content-Type": "application/rss+xml; charset=ISO-8859-1"},
                    what="Windows-1256 feed labelled ISO-8859-1")  # fmt: skip
        self.static("/enc/iso-8859-6-as-latin1.xml", rss(feed_items, encoding="").encode("iso-8859-6"),
                    headers={"Content-Type": "text/xml; charset=ISO-8859-1"},
                    what="ISO-8859-6 feed labelled ISO-8859-1")  # fmt: skip
        self.static("/enc/utf16le-no-bom.xml", rss(feed_items, encoding="utf-8").encode("utf-16-le"),
                    headers={"Content-Type": "application/rss+xml; charset=utf-8"},
                    what="UTF-16LE feed without BOM, labelled UTF-8 in header and declaration")  # fmt: skip
        for label in ("undefined", "base64", "idna"):
            self.static(f"/enc/charset-{label}.xml", rss(feed_items).encode(),
                        headers={"Content-Type": f"application/rss+xml; charset={label}"},
                        what=f"UTF-8 feed labelled charset={label}")  # fmt: skip
        self.static("/enc/declared-undefined.xml", rss(feed_items, encoding="undefined").encode(),
                    headers={"Content-Type": "application/rss+xml"},
                    what='UTF-8 feed declaring encoding="undefined"')  # fmt: skip

    def _install_xml(self) -> None:
        good = [Item(self.url("/story/221"), title=story_title(221))]

        def entity_feed(path: str, prolog: str, title: str, what: str) -> None:
            items = [Item(self.url("/story/222"), title=title), *good]
            self.static(path, rss(items, prolog=prolog), headers={"Content-Type": "application/rss+xml"}, what=what)

        entity_feed("/xml/xxe-file.xml", '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n',
                    "قبل &xxe; بعد", "external entity naming a local file")  # fmt: skip
        entity_feed("/xml/xxe-file-one-line.xml", '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                    "قبل &xxe; بعد", "external entity naming a local file, DOCTYPE on one line")  # fmt: skip
        entity_feed("/xml/xxe-http.xml", f'<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{self.url("/xml/secret.txt")}">\n]>\n',
                    "قبل &xxe; بعد", "external entity naming a URL on this site")  # fmt: skip
        entity_feed("/xml/parameter-entity.xml",
                    f'<!DOCTYPE rss [\n<!ENTITY % dtd SYSTEM "{self.url("/xml/evil.dtd")}">\n%dtd;\n]>\n',
                    "عنوان &exfil;", "external parameter entity (a remote DTD)")  # fmt: skip
        entity_feed("/xml/external-dtd.xml", f'<!DOCTYPE rss SYSTEM "{self.url("/xml/evil.dtd")}">\n',
                    "عنوان عادي", "external DTD")  # fmt: skip
        entity_feed("/xml/char-ref-out-of-range.xml", "", "قبل &#x110000; &#55296; &#99999999999; بعد",
                    "character references to no character (past U+10FFFF, a surrogate)")  # fmt: skip
        self.static("/xml/secret.txt", "SECRET-FROM-THE-SERVER", headers={"Content-Type": "text/plain"})
        self.static("/xml/evil.dtd", f'<!ENTITY exfil SYSTEM "{self.url("/xml/secret.txt")}">',
                    headers={"Content-Type": "application/xml-dtd"})  # fmt: skip
        laughs = ['<!ENTITY lol "lol">'] + [
            f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">' for i in range(1, 10)
        ]
        entity_feed("/xml/billion-laughs.xml", "<!DOCTYPE rss [\n" + "\n".join(laughs) + "\n]>\n", "&lol9;",
                    "billion laughs: nested entities, one per line")  # fmt: skip
        entity_feed("/xml/billion-laughs-one-line.xml", "<!DOCTYPE rss [" + "".join(laughs) + "]>", "&lol9;",
                    "billion laughs on one line")  # fmt: skip
        # Quadratic blow-up: one 100 KB entity referenced 1,000 times is 100 MB of text from a 103 KB
        # document (kept that small so a run without the fix fails rather than exhausting the machine:
        # feedparser's fallback parser expands it all, 2 s and 300 MB; 10,000 references took 17 s and
        # 3 GB). Nothing in it is nested, so expat's own guard trips only after expanding 100 MB.
        entity_feed("/xml/quadratic.xml", '<!DOCTYPE rss [\n<!ENTITY a "' + "ب" * 50_000 + '">\n]>\n', "&a;" * 1_000,
                    "quadratic blow-up: a big entity referenced many times")  # fmt: skip

    def _install_sizes(self) -> None:
        gz = {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
        self.route("/bomb/gzip.xml", lambda req: send(req, 200, gz, _bomb("gzip")),
                   "gzip bomb: 50 MB of zeros in about 50 KB")  # fmt: skip
        deflate = {"Content-Type": "text/html", "Content-Encoding": "deflate"}
        self.route("/bomb/deflate.html", lambda req: send(req, 200, deflate, _bomb("deflate")),
                   "deflate bomb page")  # fmt: skip
        self.static("/bomb/gzip-twice.xml", gzip.compress(gzip.compress(b"<rss/>")),
                    headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip, gzip"},
                    what="gzip inside gzip")  # fmt: skip
        self.static("/bomb/brotli.xml", b"\x1b\x03\x00\xf8\xa5\x80\x00",
                    headers={"Content-Type": "application/rss+xml", "Content-Encoding": "br"},
                    what="an encoding we did not ask for")  # fmt: skip
        self.route("/huge/endless.xml", self._endless, "endless body, no Content-Length")
        self.route("/huge/declared.xml", self._declared_huge, "Content-Length of 10 GB")
        self.route("/huge/headers.xml", self._endless_headers, "endless header lines")
        self.raw("/huge/one-header.xml", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
                 "one header line of 1 MB")  # fmt: skip

    def _endless(self, req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml")
        req.end_headers()
        req.close_connection = True
        chunk = b"<item><title>" + "ب".encode() * 30_000 + b"</title></item>"
        req.wfile.write(b"<rss><channel>")
        for _ in self._stall():
            req.wfile.write(chunk * 4)

    def _declared_huge(self, req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml")
        req.send_header("Content-Length", str(10 * 1024**3))
        req.end_headers()
        req.close_connection = True
        for _ in self._stall():
            req.wfile.write(b"<rss>" * 10_000)

    def _endless_headers(self, req: BaseHTTPRequestHandler) -> None:
        req.close_connection = True
        req.wfile.write(b"HTTP/1.1 200 OK\r\n")
        n = 0
        for _ in self._stall():
            req.wfile.write(b"".join(b"X-Pad-%d: %s\r\n" % (n + i, b"z" * 100) for i in range(100)))
            n += 100

    def _install_slow(self) -> None:
        self.route("/slow/trickle-body.xml", self._trickle_body, "a body byte every 50 ms, for ever")
        self.route("/slow/trickle-headers.xml", self._trickle_headers, "a header byte every 50 ms, for ever")
        self.route("/slow/hang.xml", self._hang, "reads the request, never answers")
        self.raw("/slow/hang-up.xml", b"", "closes the connection without a word")
        self.raw("/slow/garbage.xml", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "answers in another protocol")
        self.raw("/slow/bad-status.xml", b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", "malformed status line")
        for name, value in (
            ("huge", "9" * 30),
            ("superscript", "\u00b2"),
            ("far-future", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ):
            self.static(f"/slow/retry-after-{name}.xml", b"", status=503,
                        headers={"Content-Type": "text/plain", "Retry-After": value},
                        what=f"503 with Retry-After: {value}")  # fmt: skip

    def _trickle_body(self, req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml")
        req.end_headers()
        req.close_connection = True
        for _ in self._stall():
            req.wfile.write(b" ")
            req.wfile.flush()

    def _trickle_headers(self, req: BaseHTTPRequestHandler) -> None:
        req.close_connection = True
        req.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in self._stall():
            req.wfile.write(b"z")
            req.wfile.flush()

    def _hang(self, req: BaseHTTPRequestHandler) -> None:
        req.close_connection = True
        for _ in self._stall():
            pass

    def _install_redirects(self) -> None:
        self.redirect("/redirect/loop-a", "/redirect/loop-b", what="redirect loop, two hops")
        self.redirect("/redirect/loop-b", "/redirect/loop-a")
        self.catalogue["/redirect/chain/0"] = Route("/redirect/chain/0", "an endless chain of redirects")
        self.raw("/redirect/no-location", b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", "302 without Location")
        for name, target in MALFORMED_TARGETS.items():
            self.redirect(f"/redirect/malformed-{name}", target, what=f"redirect to malformed {target!r}")
        for scheme, target in SCHEME_TARGETS.items():
            self.redirect(f"/redirect/scheme-{scheme}", target, what=f"redirect to {target!r}")

    def _install_feeds(self) -> None:
        self.feed("/feeds/good.xml", [Item(self.url(f"/story/{n}"), title=story_title(n)) for n in (1, 2, 3)],
                  what="a good feed")  # fmt: skip
        odd = [Item(link, raw_link=raw) for link, raw in odd_links(self.base_url)]
        self.feed("/feeds/odd-links.xml", [*odd, Item(self.url("/story/31"), title=story_title(31))],
                  what="item links of every odd kind, and one good one")  # fmt: skip
        twins = [
            Item(self.url("/story/41"), title=story_title(41), guid="same-guid"),
            Item(self.url("/story/42"), title=story_title(42), guid="same-guid"),
            Item(self.url("/story/43"), title=story_title(43), guid="a"),
            Item(self.url("/story/43"), title=story_title(43), guid="b"),
            Item(self.url("/story/43?utm_source=rss"), title=story_title(43), guid="c"),
            Item(self.url("/story/44"), title=story_title(44)),
            Item(self.url("/story/44"), title=story_title(44)),
        ]
        self.feed("/feeds/duplicate-guids.xml", twins, what="one guid for two links, one link under three guids")
        dated = [
            Item(self.url(f"/story/{50 + n}"), title=story_title(50 + n), pub_date=d)
            for n, d in enumerate(ABSURD_DATES)
        ]
        self.feed("/feeds/absurd-dates.xml", dated, what="publication dates from year 1 to 99999")
        page = "<!DOCTYPE html><html><head><title>الرئيسية</title></head><body><p>مرحبا بكم</p></body></html>"
        self.static("/feeds/html-as-feed.xml", page, headers={"Content-Type": "application/rss+xml"},
                    what="an HTML page served as a feed")  # fmt: skip
        self.static("/feeds/html-page.xml", page, what="an HTML page where the feed was")
        self.feed("/feeds/feed-as-html.xml", [Item(self.url(f"/story/{n}"), title=story_title(n)) for n in (61, 62)],
                  content_type="text/html; charset=utf-8", what="a feed served as text/html")  # fmt: skip
        self.static("/feeds/not-xml.xml", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
                    headers={"Content-Type": "image/png"}, what="an image where the feed was")  # fmt: skip
        etag = "\u062e\u0628\u0631".encode()  # raw UTF-8 bytes in a header
        items = rss([Item(self.url("/story/71"), title=story_title(71))]).encode()
        self.raw("/feeds/utf8-etag.xml",
                 b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: \"" + etag + b"\"\r\n"
                 b"Last-Modified: \xd8\xa7\xd9\x84\xd8\xa3\xd8\xad\xd8\xaf\r\nContent-Length: %d\r\n\r\n" % len(items)
                 + items, "ETag and Last-Modified in raw UTF-8")  # fmt: skip


# Redirect targets that are no URL at all, or none an HTTP client can use.
MALFORMED_TARGETS: dict[str, bytes] = {
    "open-bracket": b"http://[::1",
    "space-in-host": b"http://exa mple.com/",
    "port-too-big": b"http://127.0.0.1:99999/",
    "port-not-a-number": b"http://127.0.0.1:http/",
    "bad-ipv4": b"http://999.999.999.999/",
    "control-char": b"http://\x01x/",
    "empty-punycode": b"http://xn--/",
    "empty-label": b"http://a..b/",
    "octal-metadata": b"http://0251.0376.0251.0376/",
    "zone-id": b"http://[fe80::1%25eth0]/",
    "not-utf8": b"http://\xff\xfe/",
    "empty": b"",
}
SCHEME_TARGETS: dict[str, str] = {
    "javascript": "javascript:alert(document.cookie)",
    "file": "file:///etc/passwd",
    "ftp": "ftp://127.0.0.1/pub/feed.xml",
    "data": "data:text/html,<script>alert(1)</script>",
    "gopher": "gopher://127.0.0.1:70/_GET%20/",
    "mailto": "mailto:desk@hostile.example",
}
# Link-local and metadata addresses in every spelling a socket accepts.
METADATA_SPELLINGS: list[str] = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/latest/meta-data/",
    "http://0xA9FEA9FE/latest/meta-data/",
    "http://169.254.43518/latest/meta-data/",
    "http://169.16689662/latest/meta-data/",
    "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/",
    "http://0251.0376.0251.0376/latest/meta-data/",
    "http://169.254.169.254:80/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[::a9fe:a9fe]/latest/meta-data/",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fd20:ce::254]/computeMetadata/v1/",
    "http://[fe80::1]/",
    "http://169.254.1.1/",
    "http://100.100.100.200/latest/meta-data/",
]
ABSURD_DATES = [
    "Mon, 01 Jan 0001 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 99999 00:00:00 GMT",
    "Sun, 30 Feb 2025 10:00:00 GMT",
    "yesterday at noon",
    "Tue, 02 Jan 2024 10:00:00 +9900",
]


def odd_links(base_url: str) -> list[tuple[str, bool]]:
    """(link, written raw) pairs no feed should contain, with what the poller should make of them."""
    return [
        ("javascript:alert(1)", False),
        ("mailto:desk@hostile.example", False),
        ("data:text/html,hello", False),
        ("ftp://127.0.0.1/story", False),
        ("   ", False),
        ("http://[oops/", False),
        ("http:///no-host", False),
        (f"{base_url}/story/{'x' * 10_000}", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://2852039166/latest/meta-data/", False),
        ("/story/32", False),  # relative: resolves against the feed
        ("//127.0.0.1:" + base_url.rsplit(":", 1)[1] + "/story/33", False),  # protocol-relative
        (f"  \n\t{base_url}/story/34 \n ", False),  # padded
        ("http://\u0645\u062b\u0627\u0644.\u0625\u062e\u062a\u0628\u0627\u0631/\u062e\u0628\u0631", False),  # IDN
    ]


def send(req: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: bytes) -> None:
    try:
        req.send_response(status)
        for name, value in headers.items():
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if body:
            req.wfile.write(body)
    except OSError:
        pass  # the client gave up (size cap, timeout)


def _raw(req: BaseHTTPRequestHandler, response: bytes) -> None:
    req.close_connection = True
    try:
        req.wfile.write(response)
        req.wfile.flush()
    except OSError:
        pass
