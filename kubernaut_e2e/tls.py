"""The environment's TLS material: a CA, the services' certificates, signing keys. Pure.

Why: DataStorage serves HTTPS and the Gateway trusts it through a CA bundle; upstream's harness
generates both itself (no cert-manager), and so does this project, with `cryptography`. The CA
certificate is also written on the host (the tls step does that) so that `e2e.smoke`, the health
checks and the suite verify DataStorage instead of skipping verification.

Leaf certificates are ECDSA P-256 for serverAuth, valid for `localhost`, 127.0.0.1 and every
in-cluster name of their Service; signing keys are self-signed RSA (the audit signer needs RSA).
The private keys only ever exist in memory and in the cluster's Secrets.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Certificates start an hour in the past: a node's clock a little behind must not reject them.
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Material:
    ca_pem: str
    objects: tuple[dict[str, Any], ...]  # the ConfigMap holding the CA and one Secret per key

    @property
    def fingerprint(self) -> str:
        return ca_fingerprint(self.ca_pem)


def ca_fingerprint(ca_pem: str) -> str:
    """A short, stable name of a CA: it changes exactly when the CA is regenerated."""
    return hashlib.sha256(ca_pem.strip().encode()).hexdigest()[:16]


def service_names(service: str, namespace: str) -> list[str]:
    return ["localhost", service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, hours: int,
             now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + datetime.timedelta(hours=hours)))


def generate(settings: Mapping[str, Any], namespace: str, now: datetime.datetime | None = None) -> Material:
    """CA + leaf certificates + signing keys for a stack's tls component settings."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_settings = settings["ca"]
    hours = int(ca_settings["valid_hours"])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_settings["common_name"])
    ca_cert = (_builder(ca_subject, ca_subject, ca_key.public_key(), hours, now)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    ca_pem = _pem_cert(ca_cert)
    objects: list[dict[str, Any]] = [_configmap(ca_settings["configmap"], namespace, {ca_settings["key"]: ca_pem})]
    for cert in settings.get("certificates") or []:
        key = ec.generate_private_key(ec.SECP256R1())
        names = service_names(cert["service"], namespace)
        leaf = (_builder(_name(cert["service"]), ca_subject, key.public_key(), hours, now)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        objects.append(_tls_secret(cert["secret"], namespace, _pem_cert(leaf), _pem_key(key)))
    for signing in settings.get("signing") or []:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(signing.get("rsa_bits", 2048)))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signing["common_name"]),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kubernaut")])
        cert = (_builder(subject, subject, key.public_key(), hours, now)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(key, hashes.SHA256()))
        objects.append(_tls_secret(signing["secret"], namespace, _pem_cert(cert), _pem_key(key)))
    return Material(ca_pem, tuple(objects))


def names_of(settings: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(the CA ConfigMap's name, every Secret's name) a tls component creates."""
    secrets = [c["secret"] for c in settings.get("certificates") or []]
    secrets += [s["secret"] for s in settings.get("signing") or []]
    return settings["ca"]["configmap"], secrets


def expires_within(ca_pem: str, window: datetime.timedelta, now: datetime.datetime | None = None) -> bool:
    """True when the CA is unreadable or expires within `window` (then it is regenerated)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        return True
    return cert.not_valid_after_utc - now < window


def verify_chain(ca_pem: str, leaf_pem: str, host: str) -> None:
    """Raise ValueError unless `leaf_pem` is signed by the CA and valid for `host` (tests, smoke)."""
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    hosts: Sequence[str] = [*sans.get_values_for_type(x509.DNSName),
                            *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]
    if host not in hosts:
        raise ValueError(f"certificate is not valid for {host} (valid for {', '.join(hosts)})")


def _configmap(name: str, namespace: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "kubernaut-e2e"}},
            "data": dict(data)}


def _tls_secret(name: str, namespace: str, cert_pem: str, key_pem: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "kubernaut-e2e"}},
            "stringData": {"tls.crt": cert_pem, "tls.key": key_pem}}
