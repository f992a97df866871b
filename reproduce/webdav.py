"""A minimal read-only WebDAV client: list a folder (``PROPFIND``, ``Depth: 1``) and name the URL and
headers that read one file.

Owns: the HTTP side of a WebDAV share (request, Basic authentication, parsing the ``multistatus``
answer into names, sizes and ETags).  The download itself (resume with ``Range`` on a ``.part``
file) is :func:`reproduce.assets._download`; which files to read is :mod:`reproduce.fetch`.

A Nextcloud public share is a WebDAV tree at ``https://HOST/public.php/webdav/`` with the share
token as user name and an empty password; a mirror serves the same tree at ``URL/<token>/``
without authentication.
"""
from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from converters.errors import InputError

DAV = "{DAV:}"
USER_AGENT = "caffe-agegender-repro"
MAX_LISTING = 64 << 20  # a folder listing larger than this is not a share we know how to read

# RFC 4918 9.1: the properties a Depth 1 PROPFIND is asked for
PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                 b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/>'
                 b'<d:getetag/></d:prop></d:propfind>\n')


class WebDAVError(RuntimeError, InputError):
    """A listing that cannot be obtained or read (message names the URL)."""


@dataclass(frozen=True)
class Entry:
    path: str          # path below the share root, '/'-separated, no leading or trailing '/'
    is_dir: bool
    size: int | None   # bytes (files)
    etag: str | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class WebDAV:
    """One share: ``base_url`` is its root folder; ``user`` (the share token) authenticates with an
    empty password when given."""

    def __init__(self, base_url: str, user: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/") + "/"
        self.base_path = urllib.parse.unquote(urllib.parse.urlparse(self.base_url).path)
        self.user = user
        self.timeout = timeout

    def headers(self) -> dict:
        h = {"User-Agent": USER_AGENT}
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:".encode("utf-8")).decode("ascii")
            h["Authorization"] = f"Basic {token}"
        return h

    def url(self, path: str) -> str:
        return self.base_url + urllib.parse.quote(path.strip("/"))

    def listdir(self, path: str = "") -> list[Entry]:
        """The entries of folder ``path`` (not the folder itself), sorted by name."""
        url = self.url(path)
        if path.strip("/"):
            url += "/"
        req = urllib.request.Request(url, data=PROPFIND_BODY, method="PROPFIND",
                                     headers={**self.headers(), "Depth": "1",
                                              "Content-Type": "application/xml; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_LISTING + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise FileNotFoundError(url) from None
            raise WebDAVError(f"{url}: PROPFIND answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebDAVError(f"{url}: cannot list the folder ({reason})") from None
        if len(body) > MAX_LISTING:
            raise WebDAVError(f"{url}: folder listing larger than {MAX_LISTING >> 20} MiB")
        return self._parse(body, url, path.strip("/"))

    def _parse(self, body: bytes, url: str, folder: str) -> list[Entry]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise WebDAVError(f"{url}: the PROPFIND answer is not a WebDAV multistatus ({exc})") from None
        entries = []
        for resp in root.iter(f"{DAV}response"):
            href = resp.findtext(f"{DAV}href")
            if not href:
                continue
            full = urllib.parse.unquote(urllib.parse.urlparse(href).path)
            if not full.startswith(self.base_path) and full + "/" != self.base_path:
                raise WebDAVError(f"{url}: listing names {href!r}, outside the share {self.base_url}")
            rel = full[len(self.base_path):].strip("/")
            if rel == folder:
                continue  # the folder itself
            is_dir, size, etag = href.endswith("/"), None, None
            for stat in resp.iter(f"{DAV}propstat"):
                if "200" not in (stat.findtext(f"{DAV}status") or "200"):
                    continue
                prop = stat.find(f"{DAV}prop")
                if prop is None:
                    continue
                rtype = prop.find(f"{DAV}resourcetype")
                if rtype is not None and rtype.find(f"{DAV}collection") is not None:
                    is_dir = True
                length = prop.findtext(f"{DAV}getcontentlength")
                if length and length.strip().isdigit():
                    size = int(length.strip())
                tag = prop.findtext(f"{DAV}getetag")
                etag = tag.strip() if tag else etag
            entries.append(Entry(rel, is_dir, None if is_dir else size, etag))
        return sorted(entries, key=lambda e: e.path)
