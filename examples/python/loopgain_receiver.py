"""Python bindings for loopgain-receiver through its C API (ctypes only).

The receiver keeps the anonymized loop telemetry the loopgain client sends,
per customer, and answers the aggregate reads. This module is a thin,
typed layer over ``include/loopgain/receiver.h``; that header remains the
specification of every call.

Loading the library, first match wins:

1. the ``lib`` argument of :class:`Receiver` or :func:`load_library`;
2. the ``LOOPGAIN_RECEIVER_LIB`` environment variable (a file path);
3. ``ctypes.util.find_library("loopgain_receiver")``;
4. ``libloopgain_receiver.so.0`` through the dynamic loader's search path.

Every failed call raises :class:`ReceiverError`, which carries the machine
code the HTTP API uses (``invalid_payload``), the lgr_status number, the
JSON Pointer of the offending field, the message and the HTTP status.

Every object and string the library returns is released with its matching
``lgr_*_free`` before the method returns. A :class:`Receiver` may be used
from any number of threads at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
import weakref
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int,
                    c_int64, c_size_t, c_uint, c_void_p)
from typing import (Any, Callable, Iterable, List, Mapping, NamedTuple,
                    Optional, Tuple, Union)

__all__ = [
    "LGR_OK", "LGR_ERR_INVALID_ARGUMENT", "LGR_ERR_CLOSED",
    "LGR_ERR_UNAUTHORIZED", "LGR_ERR_INVALID_PAYLOAD", "LGR_ERR_INVALID_QUERY",
    "LGR_ERR_NOT_FOUND", "LGR_ERR_STORAGE", "LGR_ERR_BUSY",
    "LGR_ERR_SCHEMA_TOO_NEW", "LGR_ERR_NO_MEMORY", "LGR_ERR_INTERNAL",
    "LOG_DEBUG", "LOG_INFO", "LOG_WARN", "LOG_ERROR",
    "ReceiverError", "IssuedToken", "IngestResult", "HttpResponse",
    "Receiver", "load_library", "library_version",
]

# lgr_status values (receiver.h). Codes are only ever added.
LGR_OK = 0
LGR_ERR_INVALID_ARGUMENT = 1
LGR_ERR_CLOSED = 2
LGR_ERR_UNAUTHORIZED = 3
LGR_ERR_INVALID_PAYLOAD = 4
LGR_ERR_INVALID_QUERY = 5
LGR_ERR_NOT_FOUND = 6
LGR_ERR_STORAGE = 7
LGR_ERR_BUSY = 8
LGR_ERR_SCHEMA_TOO_NEW = 9
LGR_ERR_NO_MEMORY = 10
LGR_ERR_INTERNAL = 11

# lgr_log_level values.
LOG_DEBUG = 0
LOG_INFO = 1
LOG_WARN = 2
LOG_ERROR = 3

_PRIVACY_POLICIES = ("summary_only", "trajectories", "strict")
LIBRARY_ENV = "LOOPGAIN_RECEIVER_LIB"


class ReceiverError(Exception):
    """A failed library call.

    Attributes:
        code: the machine-readable code of the HTTP API, e.g.
            ``"invalid_payload"``, ``"unauthorized"``, ``"closed"``.
        status: the lgr_status number (``LGR_ERR_*``).
        pointer: JSON Pointer of the offending field (``"/schema_version"``),
            the query parameter name for ``invalid_query``, or ``""``.
        message: one line for humans.
        http_status: the HTTP status a host should answer with.
    """

    def __init__(self, code: str, status: int, pointer: str, message: str,
                 http_status: int) -> None:
        super().__init__(code, status, pointer, message, http_status)
        self.code = code
        self.status = status
        self.pointer = pointer
        self.message = message
        self.http_status = http_status

    def __str__(self) -> str:
        where = f" at {self.pointer}" if self.pointer else ""
        return f"{self.code}{where}: {self.message}"


class IssuedToken(NamedTuple):
    """A new customer and its first bearer token (shown exactly once)."""
    customer_id: str
    token: str


class IngestResult(NamedTuple):
    """What lgr_ingest stored: the customer, and JSON Pointers of the parts
    removed by the privacy policy (redacted) or dropped as unknown
    (ignored)."""
    customer_id: str
    redacted: List[str]
    ignored: List[str]


class HttpResponse(tuple):
    """An answer from :meth:`Receiver.handle_request`: a ``(status, headers,
    body)`` tuple that also carries ``customer_id`` for access logs.

    ``headers`` holds Content-Type first, then every header the library asks
    for (security headers, CORS, Retry-After). The host adds Content-Length.
    """

    def __new__(cls, status: int, headers: List[Tuple[str, str]],
                body: bytes, customer_id: str = "") -> "HttpResponse":
        self = super().__new__(cls, (status, headers, body))
        self.customer_id = customer_id
        return self

    @property
    def status(self) -> int:
        return self[0]

    @property
    def headers(self) -> List[Tuple[str, str]]:
        return self[1]

    @property
    def body(self) -> bytes:
        return self[2]

    def __repr__(self) -> str:
        return (f"HttpResponse(status={self.status}, headers={self.headers!r},"
                f" body={self.body!r}, customer_id={self.customer_id!r})")


# ---------------------------------------------------------------------------
# The shared library
# ---------------------------------------------------------------------------

class _HttpRequest(Structure):
    """lgr_http_request, version 1 (LGR_HTTP_REQUEST_VERSION)."""
    _fields_ = [
        ("version", c_uint),
        ("method", c_char_p),
        ("path", c_char_p),
        ("query", c_char_p),
        ("authorization", c_char_p),
        ("origin", c_char_p),
        ("content_type", c_char_p),
        ("content_length", c_char_p),
        ("body", c_char_p),
        ("body_len", c_size_t),
        ("access_control_request_method", c_char_p),
    ]


_LGR_HTTP_REQUEST_VERSION = 1

# void (*)(void *user_data, lgr_log_level level, const char *message)
_LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)

# void (*)(void *user_data, lgr_http_response *response). Declared so that
# the table covers the header; this module itself answers requests with the
# blocking lgr_handle_request(), one host thread per request.
_RESPONSE_FN = CFUNCTYPE(None, c_void_p, c_void_p)

_P = c_void_p            # opaque handles
_PP = POINTER(c_void_p)  # out-parameters for handles and owned strings
_ERR = POINTER(c_void_p)  # lgr_error **
_STATUS = c_int

# name: (restype, argtypes) for every function in receiver.h.
_SIGNATURES = {
    "lgr_version": (c_char_p, []),
    "lgr_version_number": (c_int, []),
    "lgr_status_name": (c_char_p, [c_int]),
    "lgr_error_status": (_STATUS, [_P]),
    "lgr_error_code_name": (c_char_p, [_P]),
    "lgr_error_pointer": (c_char_p, [_P]),
    "lgr_error_message": (c_char_p, [_P]),
    "lgr_error_http_status": (c_int, [_P]),
    "lgr_error_free": (None, [_P]),
    "lgr_string_free": (None, [_P]),
    "lgr_options_create": (_P, []),
    "lgr_options_free": (None, [_P]),
    "lgr_options_set_db_path": (_STATUS, [_P, c_char_p, _ERR]),
    "lgr_options_set_privacy_policy": (_STATUS, [_P, c_int, _ERR]),
    "lgr_options_set_privacy_policy_name": (_STATUS, [_P, c_char_p, _ERR]),
    "lgr_options_set_max_body_bytes": (_STATUS, [_P, c_size_t, _ERR]),
    "lgr_options_add_cors_origin": (_STATUS, [_P, c_char_p, _ERR]),
    "lgr_options_set_logger": (_STATUS, [_P, c_int, _LOG_FN, c_void_p,
                                         _ERR]),
    "lgr_options_set_fixed_time": (_STATUS, [_P, c_int64, _ERR]),
    "lgr_receiver_open": (_STATUS, [_P, _PP, _ERR]),
    "lgr_receiver_close": (_STATUS, [_P, _ERR]),
    "lgr_receiver_free": (None, [_P]),
    "lgr_customer_create": (_STATUS, [_P, c_char_p, c_char_p, _PP, _PP,
                                      _ERR]),
    "lgr_token_rotate": (_STATUS, [_P, c_char_p, c_int64, _PP, _ERR]),
    "lgr_customer_revoke": (_STATUS, [_P, c_char_p, _ERR]),
    "lgr_customer_delete": (_STATUS, [_P, c_char_p, _ERR]),
    "lgr_customers_list_json": (_STATUS, [_P, _PP, POINTER(c_size_t),
                                          _ERR]),
    "lgr_authenticate": (_STATUS, [_P, c_char_p, _PP, _ERR]),
    "lgr_ingest": (_STATUS, [_P, c_char_p, c_char_p, c_size_t, _PP, _ERR]),
    "lgr_ingest_result_customer_id": (c_char_p, [_P]),
    "lgr_ingest_result_redacted_count": (c_size_t, [_P]),
    "lgr_ingest_result_redacted": (c_char_p, [_P, c_size_t]),
    "lgr_ingest_result_ignored_count": (c_size_t, [_P]),
    "lgr_ingest_result_ignored": (c_char_p, [_P, c_size_t]),
    "lgr_ingest_result_free": (None, [_P]),
    "lgr_stats_json": (_STATUS, [_P, c_char_p, _PP, POINTER(c_size_t),
                                 _ERR]),
    "lgr_profiles_json": (_STATUS, [_P, c_char_p, c_char_p, c_int, _PP,
                                    POINTER(c_size_t), _ERR]),
    "lgr_events_json": (_STATUS, [_P, c_char_p, c_int, _PP,
                                  POINTER(c_size_t), _ERR]),
    "lgr_http_request_init": (None, [POINTER(_HttpRequest)]),
    "lgr_handle_request": (_STATUS, [_P, POINTER(_HttpRequest), _PP]),
    "lgr_http_response_status": (c_int, [_P]),
    "lgr_http_response_content_type": (c_char_p, [_P]),
    "lgr_http_response_body": (c_void_p, [_P, POINTER(c_size_t)]),
    "lgr_http_response_header_count": (c_size_t, [_P]),
    "lgr_http_response_header": (_STATUS, [_P, c_size_t, POINTER(c_char_p),
                                           POINTER(c_char_p)]),
    "lgr_http_response_customer_id": (c_char_p, [_P]),
    "lgr_http_response_free": (None, [_P]),
    "lgr_handle_request_async": (_STATUS, [_P, POINTER(_HttpRequest),
                                           _RESPONSE_FN, c_void_p]),
}

_libraries: dict = {}
_libraries_lock = threading.Lock()


def _locate(path: Optional[str]) -> str:
    if path:
        return path
    env = os.environ.get(LIBRARY_ENV)
    if env:
        # A relative path is the caller's, not the loader's search path.
        return os.path.abspath(env) if os.sep in env else env
    found = ctypes.util.find_library("loopgain_receiver")
    return found or "libloopgain_receiver.so.0"


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads the shared library (see the module docstring for the search)
    and declares the signature of every C function. Cached per path.

    Raises OSError when the library cannot be loaded and AttributeError when
    it lacks a function of the header (an older library).
    """
    name = _locate(path)
    with _libraries_lock:
        lib = _libraries.get(name)
        if lib is None:
            lib = ctypes.CDLL(name)
            for fn_name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, fn_name)
                fn.restype = restype
                fn.argtypes = argtypes
            _libraries[name] = lib
        return lib


def library_version(lib: Optional[str] = None) -> str:
    """The version string of the loaded library, e.g. ``"0.2.0"``."""
    return load_library(lib).lgr_version().decode()


def _text(value: str, what: str) -> bytes:
    """UTF-8 for a C string argument. Lone surrogates pass through so that
    the library, not Python, reports invalid text; NUL cannot cross as C
    text and is refused rather than truncated."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if "\0" in value:
        raise ReceiverError("invalid_argument", LGR_ERR_INVALID_ARGUMENT, "",
                            f"{what} contains a NUL character", 400)
    return value.encode("utf-8", "surrogatepass")


def _int(value: Any, what: str, low: int, high: int) -> int:
    """A C integer argument. ctypes would silently wrap an out-of-range int
    (2**64 + 5 becomes 5) and accept floats or strings by conversion; the
    library must see exactly the number the caller meant, or nothing."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ReceiverError("invalid_argument", LGR_ERR_INVALID_ARGUMENT, "",
                            f"{what} must be from {low} to {high}", 400)
    return value


_INT_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_SIZE_MAX = 2**64 - 1


def _opt_text(value: Optional[str], what: str) -> Optional[bytes]:
    return None if value is None else _text(value, what)


def _body_bytes(body: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        # bytes(5) would be five NUL bytes, not an error.
        raise TypeError("body must be bytes or str, not "
                        f"{type(body).__name__}")
    return bytes(body)


class _Api:
    """Call helpers that turn lgr_error objects into ReceiverError."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def raise_error(self, status: int, err: c_void_p) -> None:
        lib = self.lib
        if not err:
            name = lib.lgr_status_name(status).decode()
            raise ReceiverError("internal_error", status, "",
                                f"{name} without error details", 500)
        try:
            exc = ReceiverError(
                lib.lgr_error_code_name(err).decode("utf-8", "replace"),
                int(lib.lgr_error_status(err)),
                lib.lgr_error_pointer(err).decode("utf-8", "replace"),
                lib.lgr_error_message(err).decode("utf-8", "replace"),
                int(lib.lgr_error_http_status(err)))
        finally:
            lib.lgr_error_free(err)
        raise exc

    def call(self, fn: Callable[..., int], *args: Any) -> None:
        """Calls `fn(*args, &error)` and raises on failure."""
        err = c_void_p()
        status = fn(*args, byref(err))
        if status != LGR_OK:
            self.raise_error(status, err)
        if err:  # not expected on success; never leak it.
            self.lib.lgr_error_free(err)

    def take_string(self, ptr: c_void_p, length: Optional[int] = None) -> str:
        """Copies and frees a string the library handed over."""
        if not ptr:
            return ""
        try:
            if length is None:
                data = ctypes.string_at(ptr)
            else:
                data = ctypes.string_at(ptr, length)
            return data.decode("utf-8")
        finally:
            self.lib.lgr_string_free(ptr)

    def call_json(self, fn: Callable[..., int], *args: Any) -> Any:
        """Calls a read that returns (out_json, out_len); parses the JSON."""
        out = c_void_p()
        length = c_size_t()
        try:
            self.call(fn, *args, byref(out), byref(length))
        except ReceiverError:
            self.lib.lgr_string_free(out)  # NULL on failure; harmless
            raise
        return json.loads(self.take_string(out, length.value))


# ---------------------------------------------------------------------------
# The receiver
# ---------------------------------------------------------------------------

def _release(lib: ctypes.CDLL, handle: int, log_fn: Any) -> None:
    # log_fn is passed only to keep the C callback alive until the library,
    # which may still log while it closes, has released the handle.
    lib.lgr_receiver_free(handle)
    del log_fn


class Receiver:
    """One open receiver store.

    ``close()`` (or leaving a ``with`` block) stops accepting work, commits
    every acknowledged event and closes the database; later calls raise
    ``ReceiverError`` with code ``"closed"``, and :meth:`handle_request`
    answers 503. The C handle itself is released (lgr_receiver_free) when the
    object is garbage-collected, which guarantees no call is still running on
    it. Safe for concurrent use from threads; the GIL is released during
    every library call.
    """

    def __init__(self, db_path: Optional[str] = None, *,
                 privacy_policy: Optional[str] = None,
                 max_body_bytes: Optional[int] = None,
                 cors_origins: Iterable[str] = (),
                 fixed_time: Optional[int] = None,
                 logger: Optional[Callable[[int, str], None]] = None,
                 log_level: int = LOG_INFO,
                 lib: Optional[str] = None) -> None:
        """Opens (creating and migrating if needed) a store.

        Args:
            db_path: SQLite file (its directory must exist) or ``":memory:"``;
                None uses the library default ``./var/telemetry.db``.
            privacy_policy: ``"summary_only"`` (default), ``"trajectories"``
                or ``"strict"``.
            max_body_bytes: the largest accepted ingest body, 1 .. 16 MiB.
            cors_origins: browser origins allowed to call the read routes.
            fixed_time: unix seconds used as "now" (tests, replays).
            logger: called as ``logger(level, message)`` for diagnostics, from
                any thread; it must not call back into this receiver.
            log_level: the lowest level passed to ``logger``.
            lib: path of the shared library (see :func:`load_library`).

        Raises:
            ReceiverError: an invalid option, or the store cannot be opened
                (``storage_error``, ``schema_too_new``).
        """
        self._lib = load_library(lib)
        self._api = _Api(self._lib)
        self._handle: Optional[int] = None
        self._log_fn = None  # keeps the ctypes callback alive

        opts = self._lib.lgr_options_create()
        if not opts:
            raise MemoryError("lgr_options_create failed")
        try:
            self._configure(opts, db_path, privacy_policy, max_body_bytes,
                            cors_origins, fixed_time, logger, log_level)
            out = c_void_p()
            self._api.call(self._lib.lgr_receiver_open, opts, byref(out))
        finally:
            self._lib.lgr_options_free(opts)
        self._handle = out.value
        self._finalizer = weakref.finalize(self, _release, self._lib,
                                           out.value, self._log_fn)

    def _configure(self, opts: int, db_path: Optional[str],
                   privacy_policy: Optional[str],
                   max_body_bytes: Optional[int], cors_origins: Iterable[str],
                   fixed_time: Optional[int],
                   logger: Optional[Callable[[int, str], None]],
                   log_level: int) -> None:
        lib, call = self._lib, self._api.call
        if db_path is not None:
            call(lib.lgr_options_set_db_path, opts,
                 _text(os.fspath(db_path), "db_path"))
        if privacy_policy is not None:
            call(lib.lgr_options_set_privacy_policy_name, opts,
                 _text(privacy_policy, "privacy_policy"))
        if max_body_bytes is not None:
            call(lib.lgr_options_set_max_body_bytes, opts,
                 _int(max_body_bytes, "max_body_bytes", 0, _SIZE_MAX))
        if isinstance(cors_origins, str):
            cors_origins = [cors_origins]
        for origin in cors_origins:
            call(lib.lgr_options_add_cors_origin, opts,
                 _text(origin, "cors origin"))
        if fixed_time is not None:
            call(lib.lgr_options_set_fixed_time, opts,
                 _int(fixed_time, "fixed_time", 0, _INT64_MAX))
        if logger is not None:
            def forward(_user: Optional[int], level: int,
                        message: Optional[bytes]) -> None:
                try:
                    logger(level, (message or b"").decode("utf-8", "replace"))
                except Exception:  # never unwind into C
                    pass
            self._log_fn = _LOG_FN(forward)
            level = _int(log_level, "log_level", LOG_DEBUG, LOG_ERROR)
            call(lib.lgr_options_set_logger, opts, level, self._log_fn, None)

    # -- lifetime ----------------------------------------------------------

    def close(self) -> None:
        """Stops accepting work, waits for calls in flight, commits every
        acknowledged event and closes the database. Idempotent.

        Raises:
            ReceiverError: ``storage_error`` if the final flush failed.
        """
        self._api.call(self._lib.lgr_receiver_close, self._handle)

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def version(self) -> str:
        """The version of the loaded library."""
        return self._lib.lgr_version().decode()

    # -- customers and tokens --------------------------------------------

    def create_customer(self, name: str,
                        email: Optional[str] = None) -> IssuedToken:
        """Creates a customer and its first token (returned only here)."""
        cid, token = c_void_p(), c_void_p()
        self._api.call(self._lib.lgr_customer_create, self._handle,
                       _text(name, "name"), _opt_text(email, "email"),
                       byref(cid), byref(token))
        return IssuedToken(self._api.take_string(cid),
                           self._api.take_string(token))

    def rotate_token(self, customer_id: str, grace_seconds: int = 0) -> str:
        """Issues a new token; the customer's other tokens stop working after
        ``grace_seconds``. Raises ``customer_not_found`` for an unknown id."""
        token = c_void_p()
        self._api.call(self._lib.lgr_token_rotate, self._handle,
                       _text(customer_id, "customer_id"),
                       _int(grace_seconds, "grace_seconds", 0, _INT64_MAX),
                       byref(token))
        return self._api.take_string(token)

    def revoke_customer(self, customer_id: str) -> None:
        """Revokes every token of the customer; its events are kept."""
        self._api.call(self._lib.lgr_customer_revoke, self._handle,
                       _text(customer_id, "customer_id"))

    def delete_customer(self, customer_id: str) -> None:
        """Deletes the customer, its tokens and all its events."""
        self._api.call(self._lib.lgr_customer_delete, self._handle,
                       _text(customer_id, "customer_id"))

    def list_customers(self) -> List[dict]:
        """Every customer: customer_id, name, email, created_at,
        last_seen_at, active_tokens, event_count."""
        return self._api.call_json(self._lib.lgr_customers_list_json,
                                   self._handle)

    def authenticate(self, authorization: Optional[str]) -> str:
        """Resolves a raw Authorization header value (``"Bearer lgk_..."``)
        to its customer id; raises ``unauthorized`` otherwise."""
        cid = c_void_p()
        self._api.call(self._lib.lgr_authenticate, self._handle,
                       _opt_text(authorization, "authorization"), byref(cid))
        return self._api.take_string(cid)

    # -- ingest and reads -------------------------------------------------

    def ingest(self, authorization: Optional[str],
               body: Union[bytes, bytearray, memoryview, str]) -> IngestResult:
        """Validates one payload and stores it; returns once committed.

        Args:
            authorization: the raw Authorization header value.
            body: the request body as the client sent it.
        """
        data = _body_bytes(body)
        result = c_void_p()
        self._api.call(self._lib.lgr_ingest, self._handle,
                       _opt_text(authorization, "authorization"),
                       data, len(data), byref(result))
        lib = self._lib
        try:
            cid = lib.lgr_ingest_result_customer_id(result) or b""
            redacted = [lib.lgr_ingest_result_redacted(result, i).decode()
                        for i in range(
                            lib.lgr_ingest_result_redacted_count(result))]
            ignored = [lib.lgr_ingest_result_ignored(result, i).decode()
                       for i in range(
                           lib.lgr_ingest_result_ignored_count(result))]
        finally:
            lib.lgr_ingest_result_free(result)
        return IngestResult(cid.decode(), redacted, ignored)

    def stats(self, customer_id: str) -> dict:
        """The last 30 days: outcomes, totals and top workloads."""
        return self._api.call_json(self._lib.lgr_stats_json, self._handle,
                                   _text(customer_id, "customer_id"))

    def profiles(self, customer_id: str, workload_id: Optional[str] = None,
                 since_hours: int = 0) -> dict:
        """Convergence profiles, newest first (``since_hours`` 0: 30 days,
        otherwise 1..8760)."""
        return self._api.call_json(
            self._lib.lgr_profiles_json, self._handle,
            _text(customer_id, "customer_id"),
            _opt_text(workload_id, "workload_id"),
            _int(since_hours, "since_hours", 0, _INT_MAX))

    def events(self, customer_id: str, rollbacks_only: bool = False) -> dict:
        """Loop events of the last 30 days, newest first."""
        return self._api.call_json(self._lib.lgr_events_json, self._handle,
                                   _text(customer_id, "customer_id"),
                                   1 if rollbacks_only else 0)

    # -- HTTP --------------------------------------------------------------

    def handle_request(self, method: str, path: str,
                       query: Optional[str] = None,
                       headers: Optional[Mapping[str, str]] = None,
                       body: Optional[bytes] = None) -> HttpResponse:
        """Runs one HTTP request through the library's route table.

        Args:
            method: ``"GET"``, ``"POST"``, ...
            path: the path without the query string.
            query: the raw query string without ``?``, or None.
            headers: request headers; looked up case-insensitively (a dict or
                an ``http.client.HTTPMessage``). Only Authorization, Origin,
                Content-Type, Content-Length and
                Access-Control-Request-Method are used.
            body: the request body, or None when there is none.

        Returns:
            ``(status, headers, body)``. After :meth:`close` this is the
            library's 503 answer rather than an exception, so a host can
            always respond.
        """
        def header(name: str) -> Optional[bytes]:
            if headers is None:
                return None
            value = headers.get(name)
            if value is None and isinstance(headers, dict):
                lname = name.lower()
                for key, val in headers.items():
                    if key.lower() == lname:
                        value = val
                        break
            return None if value is None else _text(str(value), name)

        req = _HttpRequest()
        self._lib.lgr_http_request_init(byref(req))
        if req.version != _LGR_HTTP_REQUEST_VERSION:
            # A newer library still accepts version 1 requests.
            req.version = _LGR_HTTP_REQUEST_VERSION
        req.method = _text(method, "method")
        req.path = _text(path, "path")
        req.query = _opt_text(query, "query")
        req.authorization = header("Authorization")
        req.origin = header("Origin")
        req.content_type = header("Content-Type")
        req.content_length = header("Content-Length")
        data = None if body is None else _body_bytes(body)
        req.body = data
        req.body_len = 0 if data is None else len(data)
        req.access_control_request_method = header(
            "Access-Control-Request-Method")

        out = c_void_p()
        status = self._lib.lgr_handle_request(self._handle, byref(req),
                                              byref(out))
        if not out:  # nothing to send: a malformed request or no memory
            name = self._lib.lgr_status_name(status).decode()
            code = ("invalid_argument" if status == LGR_ERR_INVALID_ARGUMENT
                    else "internal_error")
            raise ReceiverError(code, status, "",
                                f"lgr_handle_request failed: {name}", 500)
        try:
            return self._read_response(out)
        finally:
            self._lib.lgr_http_response_free(out)

    def _read_response(self, resp: c_void_p) -> HttpResponse:
        lib = self._lib
        length = c_size_t()
        ptr = lib.lgr_http_response_body(resp, byref(length))
        body = ctypes.string_at(ptr, length.value) if ptr else b""
        content_type = lib.lgr_http_response_content_type(resp) or b""
        headers = [("Content-Type", content_type.decode())]
        name, value = c_char_p(), c_char_p()
        for i in range(lib.lgr_http_response_header_count(resp)):
            if lib.lgr_http_response_header(resp, i, byref(name),
                                            byref(value)) == LGR_OK:
                headers.append((name.value.decode(), value.value.decode()))
        customer = lib.lgr_http_response_customer_id(resp) or b""
        return HttpResponse(lib.lgr_http_response_status(resp), headers, body,
                            customer.decode())
