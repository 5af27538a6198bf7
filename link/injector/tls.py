"""The webhook's TLS context, reloaded when cert-manager renews the mounted certificate."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time

_log = logging.getLogger("stoa.link.injector")


class ReloadingCertificate:
    """A server ``SSLContext`` built from PEM files, rebuilt when the files change.

    Each connection asks for :meth:`context`; at most every ``check_interval_s``
    the files' modification times are compared, and a renewed pair is loaded for
    the connections that follow. A broken renewal keeps the last good context.
    """

    def __init__(self, cert_file: str, key_file: str, check_interval_s: float = 10.0) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._stamp = self._mtimes()
        self._context = self._load()  # raises at start-up: a webhook without a certificate is useless
        self._checked_at = time.monotonic()

    def context(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval_s:
            with self._lock:
                self._checked_at = now
                self._maybe_reload()
        return self._context

    def _maybe_reload(self) -> None:
        try:
            stamp = self._mtimes()
        except OSError as exc:
            _log.error("cannot stat the webhook certificate: %s; keeping the current one", exc)
            return
        if stamp == self._stamp:
            return
        try:
            self._context = self._load()
        except (OSError, ssl.SSLError) as exc:
            _log.error("renewed webhook certificate does not load (%s); keeping the current one", exc)
            return
        self._stamp = stamp
        _log.info("reloaded the webhook certificate from %s", self.cert_file)

    def _mtimes(self) -> tuple[float, float]:
        return os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx
