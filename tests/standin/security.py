"""What Elasticsearch checks before it routes a request: credentials, compatibility headers, TLS.

- Authentication (only when `--user` or `--api-key` is given): `Authorization: Basic` against the
  configured users (each `--user`; its role, authz.py), `Authorization: ApiKey <encoded>` against the
  configured key (owned by a superuser, `elastic`); anything else is a 401 `security_exception` with the
  three `WWW-Authenticate` challenges Elasticsearch sends. The authenticated user is what authz.py
  authorizes.
- REST API compatibility (RestCompatibleVersionHelper): `compatible-with=N` on Accept and
  Content-Type must be the current major or the one before, and agree with each other.
- TLS: a self-signed CA and a server certificate for 127.0.0.1/localhost, kept in `--tls-dir`
  (reused on restart, so a client's `ca.crt` stays valid).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
import ssl
from pathlib import Path

from .authz import User
from .errors import EsError

CHALLENGES = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
VENDOR_JSON = "application/vnd.elasticsearch+json"


def _unauthorized(reason: str, unsuccessful: str | None = None) -> EsError:
    extra: dict[str, object] = {}
    if unsuccessful:
        extra["additional_unsuccessful_credentials"] = unsuccessful
    extra["header"] = {"WWW-Authenticate": list(CHALLENGES)}
    return EsError(401, "security_exception", reason, extra=extra,
                   headers=[("WWW-Authenticate", c) for c in CHALLENGES])


def encoded_api_key(value: str) -> str:
    """`--api-key` takes Elasticsearch's `encoded` form, base64(id:secret); `id:secret` is encoded."""
    if ":" in value:
        return base64.b64encode(value.encode()).decode()
    return value


API_KEY_OWNER = "elastic"


class Authenticator:
    def __init__(self, users: list[User], api_key: str | None) -> None:
        self.users = {user.name: user for user in users}
        self.api_key = encoded_api_key(api_key) if api_key else None
        self.enabled = bool(users or api_key)

    def check(self, authorization: str | None, uri: str) -> User | None:
        """The authenticated user (None when security is off), or Elasticsearch's 401."""
        if not self.enabled:
            return None
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic" and credentials:
            try:
                name, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _unauthorized(f"missing authentication credentials for REST request [{uri}]") from None
            user = self.users.get(name)
            if user is not None and password == user.password:
                return user
            raise _unauthorized(f"unable to authenticate user [{name}] for REST request [{uri}]")
        if scheme.lower() == "apikey" and credentials:
            if credentials == self.api_key:
                key_id = base64.b64decode(credentials).decode(errors="replace").partition(":")[0]
                return User(API_KEY_OWNER, "", api_key_id=key_id)
            try:
                key_id = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key_id = credentials
            known_id = None
            if self.api_key:
                known_id = base64.b64decode(self.api_key).decode(errors="replace").partition(":")[0]
            detail = (f"API key: invalid credentials for API key [{key_id}]" if key_id == known_id
                      else f"API key: unable to find apikey with id {key_id}")
            raise _unauthorized(
                "unable to authenticate with provided credentials and anonymous access is not allowed for this request",
                detail,
            )
        raise _unauthorized(f"missing authentication credentials for REST request [{uri}]")


_PARAM = re.compile(r";\s*([^=;\s]+)\s*=\s*([^;\s]*)")


def _media_type(header: str | None) -> tuple[str | None, int | None]:
    """(ParsedMediaType.toString(), compatible-with) of one header; (None, None) when absent."""
    if header is None:
        return None, None
    base = header.split(";", 1)[0].strip().lower()
    params = {k.lower(): v for k, v in _PARAM.findall(header)}
    text = base + "".join(f"; {k}={v}" for k, v in params.items())
    version = params.get("compatible-with")
    return text, int(version) if version and version.isdigit() else None


def compatible_version(accept: str | None, content_type: str | None, has_content: bool, major: int) -> int:
    """The REST API version the request asks for, or Elasticsearch's media_type_header_exception."""
    accept_text, a_version = _media_type(accept)
    content_text, c_version = _media_type(content_type)
    accept_version = a_version if a_version is not None else major
    content_version = c_version if c_version is not None else major
    low = major - 1
    problem = None
    if accept_version > major or accept_version < low:
        problem = (f"Accept version must be either version {major} or {low}, but found {accept_version}. "
                   f"Accept={accept_text}")
    elif has_content:
        if content_version > major or content_version < low:
            problem = (f"Content-Type version must be either version {major} or {low}, but found "
                       f"{content_version}. Content-Type={content_text}")
        elif content_version != accept_version:
            problem = ("A compatible version is required on both Content-Type and Accept headers if either one "
                       "has requested a compatible version and the compatible versions must match. "
                       f"Accept={accept_text}, Content-Type={content_text}")
        elif (c_version is None) != (a_version is None):
            problem = ("A compatible version is required on both Content-Type and Accept headers if either one "
                       f"has requested a compatible version. Accept={accept_text}, Content-Type={content_text}")
    if problem:
        raise EsError(400, "media_type_header_exception", "Invalid media-type value on headers [Accept, Content-Type]",
                      caused_by=EsError(400, "status_exception", problem))
    return accept_version


def response_content_type(accept: str | None) -> str:
    """What Elasticsearch answers: the vendor type with the requested version, else plain JSON."""
    _, version = _media_type(accept)
    if accept and accept.split(";", 1)[0].strip().lower() == VENDOR_JSON and version is not None:
        return f"{VENDOR_JSON};compatible-with={version}"
    return "application/json"


def tls_context(directory: Path) -> ssl.SSLContext:
    """Server context from `directory`, creating the CA and server certificate on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, cert, key = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    if not (ca_cert.is_file() and cert.is_file() and key.is_file()):
        _generate(ca_cert, cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _generate(ca_path: Path, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esbundle stand-in CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    # ca.crt last: its presence tells a waiting client the directory is complete.
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
