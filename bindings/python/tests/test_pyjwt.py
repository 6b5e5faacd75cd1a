"""`get_signing_key_from_jwt`: a drop-in for `jwt.PyJWKClient` in code that keeps PyJWT."""

from __future__ import annotations

import threading

import jwt
import pytest

import jwkstash
from support import AUDIENCE, Provider, certified_only, signing_key


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_signing_key_decodes_with_pyjwt(provider: Provider, alg: str) -> None:
    key = signing_key(f"key-{alg}", alg)
    provider.publish([signing_key("other"), key])
    client = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint(key)

    signing = client.get_signing_key_from_jwt(token)
    assert isinstance(signing, jwt.PyJWK)
    assert signing.key_id == key.kid
    claims = jwt.decode(
        token, signing.key, algorithms=[alg], audience=AUDIENCE, issuer=provider.issuer
    )
    assert claims["sub"] == "user-1"

    # Many lookups from several threads: one fetch, and the same PyJWK every time.
    seen = []

    def work() -> None:
        for _ in range(100):
            seen.append(client.get_signing_key_from_jwt(token))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 400 and all(found is seen[0] for found in seen)
    assert provider.requests == 1


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_key_published_only_as_a_certificate_becomes_a_pyjwk(
    provider: Provider, alg: str
) -> None:
    key = certified_only(signing_key(f"key-{alg}", alg), f"certified-{alg}")
    assert not {"n", "e", "x", "y"} & set(key.jwk)
    provider.publish([signing_key("other"), key])
    client = jwkstash.Verifier(**provider.verifier_settings())
    token = provider.mint(key)
    assert client.verify(token)["sub"] == "user-1"

    signing = client.get_signing_key_from_jwt(token)
    assert signing.key_id == key.kid
    claims = jwt.decode(
        token, signing.key, algorithms=[alg], audience=AUDIENCE, issuer=provider.issuer
    )
    assert claims["sub"] == "user-1"
    # The key is the certificate's: a token another key signed under this kid does not decode.
    other = signing_key(f"other-{alg}", alg)
    forged = jwt.encode({"sub": "user-1"}, other.private, algorithm=alg, headers={"kid": key.kid})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, signing.key, algorithms=[alg])
    assert key.kid in [found.key_id for found in client.get_jwk_set().keys]
    assert provider.requests == 1


def test_signing_key_of_a_rotated_key_is_found_on_its_first_token(provider: Provider) -> None:
    client = jwkstash.Verifier(**provider.verifier_settings())
    client.get_signing_key_from_jwt(provider.mint())
    new = signing_key("key-2", "ES256")
    provider.publish([signing_key("key-1"), new])
    token = provider.mint(new)
    signing = client.get_signing_key_from_jwt(token)
    assert signing.key_id == "key-2"
    assert (
        jwt.decode(token, signing.key, algorithms=["ES256"], audience=AUDIENCE)["sub"] == "user-1"
    )
    assert provider.requests == 2


def test_pyjwk_client_errors(provider: Provider) -> None:
    client = jwkstash.Verifier(**provider.verifier_settings())
    # A kid the provider does not have (the token is old enough for the answer to count).
    stranger = signing_key("stranger")
    with pytest.raises(jwt.PyJWKClientError) as missing:
        client.get_signing_key_from_jwt(provider.mint(stranger, iat=0))
    assert isinstance(missing.value, jwkstash.SigningKeyNotFound)
    assert missing.value.code == "unknown_kid"
    assert "stranger" in str(missing.value)

    with pytest.raises(jwt.DecodeError) as unreadable:
        client.get_signing_key_from_jwt("garbage")
    assert isinstance(unreadable.value, jwkstash.InvalidToken)

    assert client.get_signing_key("key-1").key_id == "key-1"
    assert [key.key_id for key in client.get_signing_keys()] == ["key-1"]
    with pytest.raises(jwt.PyJWKClientError):
        client.get_signing_key("nope")


def test_pyjwk_client_connection_error_when_the_provider_is_down(provider: Provider) -> None:
    provider.failing = True
    client = jwkstash.Verifier(**provider.verifier_settings())
    with pytest.raises(jwt.PyJWKClientConnectionError) as unavailable:
        client.get_signing_key_from_jwt(provider.mint())
    assert isinstance(unavailable.value, jwkstash.KeysUnavailable)
