"""kubernaut_e2e.tls: the environment's CA, certificates and signing keys, checked with `cryptography`
and with Python's own TLS stack (a real handshake verified against the CA)."""
from __future__ import annotations

import base64
import datetime
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubernaut_e2e import tls
from kubernaut_e2e.stack import DEFAULT_STACK, load_stack

SETTINGS = load_stack(DEFAULT_STACK).component("tls").settings
NS = "kubernaut-system"


@pytest.fixture(scope="module")
def material() -> tls.Material:
    return tls.generate(SETTINGS, NS)


def _secret(material: tls.Material, name: str) -> dict[str, str]:
    return next(o for o in material.objects if o["metadata"]["name"] == name)["stringData"]


def test_objects_match_the_stack(material: tls.Material):
    configmap, secrets = tls.names_of(SETTINGS)
    assert configmap == "inter-service-ca"
    assert [o["metadata"]["name"] for o in material.objects] == [configmap, *secrets]
    assert material.objects[0]["data"] == {"ca.crt": material.ca_pem}
    assert all(o["type"] == "kubernetes.io/tls" and set(o["stringData"]) == {"tls.crt", "tls.key"}
               for o in material.objects[1:])


def test_ca_and_service_certificates(material: tls.Material):
    ca = x509.load_pem_x509_certificate(material.ca_pem.encode())
    assert ca.subject.rfc4514_string() == "CN=kubernaut-inter-service-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert lifetime == datetime.timedelta(hours=SETTINGS["ca"]["valid_hours"] + 1)  # one hour back-dated
    leaf = _secret(material, "datastorage-tls")["tls.crt"]
    for host in ("localhost", "127.0.0.1", "data-storage-service", "data-storage-service.kubernaut-system",
                 "data-storage-service.kubernaut-system.svc.cluster.local"):
        tls.verify_chain(material.ca_pem, leaf, host)
    with pytest.raises(ValueError, match="not valid for gateway-service"):
        tls.verify_chain(material.ca_pem, leaf, "gateway-service")
    cert = x509.load_pem_x509_certificate(leaf.encode())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usage] == ["1.3.6.1.5.5.7.3.1"]  # serverAuth only


def test_signing_key_is_self_signed_rsa_2048(material: tls.Material):
    from cryptography.hazmat.primitives import serialization

    signing = _secret(material, "datastorage-signing")
    cert = x509.load_pem_x509_certificate(signing["tls.crt"].encode())
    key = serialization.load_pem_private_key(signing["tls.key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.issuer == cert.subject and "CN=datastorage-signing" in cert.subject.rfc4514_string()


def test_a_real_handshake_verifies_against_the_ca(material: tls.Material, tmp_path: Path):
    leaf = _secret(material, "datastorage-tls")
    (tmp_path / "crt").write_text(leaf["tls.crt"])
    (tmp_path / "key").write_text(leaf["tls.key"])
    (tmp_path / "ca").write_text(material.ca_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "crt", tmp_path / "key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.sendall(b"ok")

    threading.Thread(target=serve, daemon=True).start()
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca"))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.recv(2) == b"ok"
    listener.close()


def test_expiry_window_and_fingerprint(material: tls.Material):
    assert not tls.expires_within(material.ca_pem, datetime.timedelta(hours=2))
    assert tls.expires_within(material.ca_pem, datetime.timedelta(hours=25))
    assert tls.expires_within("not a certificate", datetime.timedelta(0))
    assert tls.ca_fingerprint(material.ca_pem) == tls.ca_fingerprint(material.ca_pem + "\n")
    assert tls.ca_fingerprint(material.ca_pem) != tls.ca_fingerprint(tls.generate(SETTINGS, NS).ca_pem)
    assert base64.b64encode(material.ca_pem.encode())  # plain PEM text, ready for a ConfigMap
