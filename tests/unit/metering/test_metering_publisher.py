"""The producer configuration the settings call for (TLS and SASL passed through)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from link.metering.publisher import KafkaPublisher, PublishError, producer_options
from link.settings import MeteringSettings
from tests.harness.procs import free_port


def _ca(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_plaintext_defaults() -> None:
    opts = producer_options(MeteringSettings(bootstrap_servers=" a:9092, b:9092 ,"), "cid")
    assert opts["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert opts["acks"] == "all" and opts["compression_type"] == "zstd"
    assert opts["security_protocol"] == "PLAINTEXT" and "ssl_context" not in opts and "sasl_mechanism" not in opts
    assert opts["enable_idempotence"] is False and opts["request_timeout_ms"] == 5000
    assert producer_options(MeteringSettings(compression="none"), "cid")["compression_type"] is None


def test_sasl_over_tls_is_passed_through(tmp_path: Path) -> None:
    settings = MeteringSettings(
        bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="link", sasl_password="s3cret", ssl_cafile=str(_ca(tmp_path)), idempotence=True,
    )
    opts = producer_options(settings, "cid")
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert opts["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert opts["ssl_context"].get_ca_certs()[0]["subject"] == ((("commonName", "test-ca"),),)
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "link", "s3cret",
    )
    assert opts["enable_idempotence"] is True


def test_incomplete_sasl_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="SASL needs"):
        MeteringSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")


async def test_an_absent_broker_is_a_publish_error_not_a_crash() -> None:
    publisher = KafkaPublisher(
        MeteringSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", send_timeout_s=1.0), "cid"
    )
    with pytest.raises(PublishError):
        await publisher.connect()
    assert not publisher.connected and publisher.last_error
    with pytest.raises(PublishError, match="not connected"):
        await publisher.publish([(b"k", b"v")])
    await publisher.close()


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None) -> object:
        self.records.append((key, value))
        return object()


class _Producer:
    """The few calls ``_send_all`` makes of aiokafka's producer, recording where each record went."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))
        self.sent: dict[bytes | None, set[int]] = {}
        cluster = type("Cluster", (), {"available_partitions_for_topic": lambda _, topic: self.partitions})()
        self.client = type("Client", (), {"cluster": cluster})()

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> object:
        import asyncio

        for key, _ in batch.records:
            self.sent.setdefault(key, set()).add(partition)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_each_tenant_lands_on_kafkas_default_partition_as_the_partitions_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Partitions are remembered per key: still murmur2's answer for the partition list in force,
    also after the topic grows and once the memory is past its bound."""
    from aiokafka.partitioner import DefaultPartitioner

    from link.metering import publisher as module

    monkeypatch.setattr(module, "_PARTITION_CACHE_MAX", 50)
    pub = KafkaPublisher(MeteringSettings(), client_id="t")
    keys = [f"tenant-{i}".encode() for i in range(120)] + [b"", "t\u00e9nant".encode()]
    for count in (3, 3, 8, 1, 8):
        producer = _Producer(count)
        for _ in range(2):  # the second pass reads the remembered partitions
            await pub._send_all(producer, [(k, b"{}") for k in keys] + [(None, b"{}")])  # type: ignore[arg-type]
        partitions = sorted(producer.partitions)
        for key in keys:
            assert producer.sent[key] == {DefaultPartitioner()(key, partitions, partitions)}, (count, key)
        assert len(producer.sent[None]) <= 2 and producer.sent[None] <= producer.partitions
    assert len(pub._partition_of) <= 50 + len(keys)
