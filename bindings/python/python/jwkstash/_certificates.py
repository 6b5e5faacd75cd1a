"""The public key members of a JWK whose key is only in its certificate (``x5c``), for PyJWT.

jwkstash verifies with such a key (it reads the certificate's key and checks that it agrees
with the JWK's other members), but ``jwt.PyJWK`` reads only ``n``/``e`` or ``crv``/``x``/``y``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Dict


def with_certificate_key(members: Dict[str, Any]) -> Dict[str, Any]:
    """``members`` with the key members of its first ``x5c`` certificate added, when the JWK
    has a certificate and no key members of its own; otherwise ``members`` as they are."""
    if not isinstance(members, dict):
        return members
    chain = members.get("x5c")
    if not isinstance(chain, list) or not chain or any(name in members for name in ("n", "x")):
        return members
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except (TypeError, ValueError, binascii.Error):
        return members  # PyJWK then says what is missing
    public = certificate.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        key = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        key = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        key = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        return members
    return {**members, **key}
