"""DTLS contexts that need no writable and executable memory.

The unit runs with ``MemoryDenyWriteExecute=yes``. aiortc's DTLS context asks pyOpenSSL
for a certificate-verify callback (a Python lambda that accepts any certificate: the
peer's certificate is checked against the fingerprint in its SDP after the handshake).
pyOpenSSL makes that callback with cffi's ``ffi.callback``, which builds a trampoline
in memory that is both writable and executable: under W^X it raises ``MemoryError`` and
no peer connection ever completes its handshake.

:func:`install_dtls_verify` gives aiortc's contexts the same accept-any callback made
with ctypes instead, whose libffi closures use static trampolines and need no such
memory; one callback serves every context of the process. The rest of the context is
built exactly as aiortc 1.16 builds it.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from appliance.compat import hook_off

log = logging.getLogger(__name__)

DTLS_VERIFY_OFF = "DTLS handshakes fail where writable+executable memory is refused (MemoryDenyWriteExecute=)"

_VERIFY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept(_preverify_ok: int, _store: int | None) -> int:
    return 1


class _AcceptAny:
    """The one C verify callback of the process, as a ctypes closure and as OpenSSL's type."""

    def __init__(self) -> None:
        from OpenSSL._util import ffi

        self.closure = _VERIFY(_accept)
        address = ctypes.cast(self.closure, ctypes.c_void_p).value
        self.pointer = ffi.cast("int (*)(int, X509_STORE_CTX *)", address)


def _create_ssl_context(accept: _AcceptAny) -> Any:
    from OpenSSL import SSL
    from OpenSSL._util import lib

    def create(self: Any, srtp_profiles: list[Any]) -> Any:
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_options(SSL.OP_NO_TICKET)
        lib.SSL_CTX_set_verify(ctx._context, SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, accept.pointer)
        ctx.use_certificate(self._cert)
        ctx.use_privatekey(self._key)
        ctx.set_cipher_list(
            b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
        )
        ctx.set_tlsext_use_srtp(b":".join(x.openssl_profile for x in srtp_profiles))
        return ctx

    create.wallmesh_hook = True  # type: ignore[attr-defined]
    return create


def install_dtls_verify() -> bool:
    """Have every aiortc DTLS context of this process use the W^X-safe verify callback.

    Idempotent. Returns False (and logs once that the hook is off) when aiortc or
    pyOpenSSL no longer look as this was written against; aiortc's own path stays then.
    """
    from aiortc.rtcdtlstransport import RTCCertificate

    current = getattr(RTCCertificate, "_create_ssl_context", None)
    if getattr(current, "wallmesh_hook", False):
        return True
    try:
        from OpenSSL._util import lib

        if current is None or not hasattr(lib, "SSL_CTX_set_verify"):
            raise AttributeError("RTCCertificate._create_ssl_context or SSL_CTX_set_verify is missing")
        RTCCertificate._create_ssl_context = _create_ssl_context(_AcceptAny())  # type: ignore[method-assign]
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        hook_off("aiortc", "W^X-safe DTLS verify callback", DTLS_VERIFY_OFF, str(exc))
        return False
    return True
