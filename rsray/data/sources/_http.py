"""HTTP downloads with bounded retries, and a content cache keyed by URL.

Used by the GLOBE Observer source (photos) and its API client (JSON pages). Only the
standard library talks HTTP (``urllib``), so nothing beyond rsray's dependencies is needed.

* :class:`HttpFetcher` makes one GET with a timeout and retries *transient* failures
  (connection refused/reset, timeouts, HTTP 5xx and 429) up to ``retries`` more times,
  sleeping ``backoff * 2**k`` seconds (capped at ``max_backoff``) before retry ``k + 1``.
  Permanent failures (HTTP 4xx other than 408/429, a malformed URL) fail at once.
* :class:`UrlCache` stores fetched content under ``<root>/<h[:2]>/<h>`` with
  ``h = sha256(url)``; writes are atomic (temporary file + rename locally, one PUT on object
  stores), so concurrent Ray tasks can share one cache folder and a crash never leaves a
  partial file behind.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from rsray.errors import ConfigError, RsrayError
from rsray.storage import StorageOptions, atomic_write_bytes, get_fs, is_local
from rsray.storage import normalise as normalise_root

__all__ = ["FetchError", "HttpFetcher", "UrlCache", "is_http_url"]

USER_AGENT = "rsray (+https://github.com/rsray)"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses retried: request timeout, too many requests, and transient server errors."""


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL."""
    return value.startswith(("http://", "https://"))


class FetchError(RsrayError):
    """A URL could not be fetched.

    Args:
        url: the URL.
        reason: what went wrong, including how many attempts were made.
        status: the last HTTP status, when the server answered.
    """

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class HttpFetcher:
    """GET with a timeout and bounded, exponentially backed-off retries.

    Attributes:
        timeout: seconds to wait for the connection and for each read.
        retries: extra attempts after the first one for transient failures (0 = one try).
        backoff: seconds slept before the first retry; doubled for each further retry.
        max_backoff: upper bound of one sleep.
        sleep: the sleeping function (tests pass a recorder).
    """

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"timeout: {self.timeout} must be > 0 seconds")
        if self.retries < 0:
            raise ConfigError(f"retries: {self.retries} must be >= 0")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError(f"backoff: {self.backoff}/{self.max_backoff} must be >= 0")

    def delay(self, retry: int) -> float:
        """Seconds slept before retry number ``retry`` (0-based)."""
        return min(self.backoff * 2.0**retry, self.max_backoff)

    def get(self, url: str) -> bytes:
        """The body of ``url``.

        Raises:
            FetchError: a permanent failure, or a transient one that persisted through every
                retry; the reason names the last error and the number of attempts.
        """
        if not is_http_url(url):
            raise FetchError(url, "not an http(s) URL")
        attempts = self.retries + 1
        last = ""
        status: int | None = None
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.delay(attempt - 1))
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as exc:
                status = exc.code
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code not in RETRY_STATUS:
                    raise FetchError(url, f"{last} (not retried)", status) from None
            except urllib.error.URLError as exc:
                status = None
                last = f"unreachable ({_reason(exc.reason)})"
            except TimeoutError:
                status = None
                last = f"timed out after {self.timeout:g} s"
            except (ConnectionError, OSError) as exc:  # reset mid-body, truncated response
                status = None
                last = f"connection failed ({_reason(exc)})"
            except ValueError as exc:  # malformed URL
                raise FetchError(url, f"invalid URL ({exc})") from None
        plural = "s" if attempts > 1 else ""
        raise FetchError(url, f"{last} after {attempts} attempt{plural}", status)


def _reason(exc: object) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if isinstance(exc, BaseException) else text


class UrlCache:
    """Content fetched from URLs, stored by the sha256 of the URL (local folder or fsspec URL).

    Args:
        root: cache folder (created on first write); ``s3://...`` shares one cache between
            the nodes of a cluster.
        storage_options: fsspec options for a remote root.
    """

    def __init__(self, root: str, storage_options: StorageOptions = None) -> None:
        self.root = normalise_root(str(root))
        self.storage_options = dict(storage_options or {})

    def __repr__(self) -> str:
        return f"UrlCache({self.root!r})"

    def path_for(self, url: str) -> str:
        """Where the content of ``url`` is (or would be) stored."""
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        fs, root = get_fs(self.root, self.storage_options)
        if is_local(fs):
            return os.path.join(root, digest[:2], digest)
        return posixpath.join(root.rstrip("/"), digest[:2], digest)

    def get(self, url: str) -> bytes | None:
        """Cached content of ``url``, or ``None`` when it is not cached."""
        fs, _ = get_fs(self.root, self.storage_options)
        path = self.path_for(url)
        try:
            if is_local(fs):
                with open(path, "rb") as fh:
                    return fh.read()
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            return None

    def put(self, url: str, data: bytes) -> None:
        """Store ``data`` as the content of ``url`` (atomically)."""
        fs, _ = get_fs(self.root, self.storage_options)
        atomic_write_bytes(fs, self.path_for(url), data)
