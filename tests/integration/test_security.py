"""Security basics on real brokers: the worker talks TLS and SASL (PLAIN, SCRAM) as configured by TAGGER_*
settings, fails clearly on a wrong password or an untrusted certificate, never logs message contents at INFO,
and never unpickles anything while loading and serving the model.

TLS runs on a broker of its own (its own ports and data folder, certificates made by the test with openssl),
so the suite's shared broker is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream_app.topology.retention import KEPT_FOR_EVER
from tests.conftest import KAFKA
from tests.integration.harness import ROOT, Topics, WorkerProcess, create_topic, free_port, produce, read_outputs, run
from tests.integration.test_worker import dataset_rows, distinct_rows
from tools.replay import event_value

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER, PASSWORD = "tagger", "s3cret-" + uuid.uuid4().hex[:8]
SCRAM_USER = "tagger-scram"


@dataclass(frozen=True)
class SecureBroker:
    """A broker with PLAINTEXT (for the test's own clients), SSL and SASL_SSL listeners."""

    plaintext: str
    ssl: str
    sasl_ssl: str
    ca_file: Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A self-signed CA and a broker certificate for 127.0.0.1 signed by it; returns (CA file, PEM keystore)."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "broker.key", "broker.csr", "broker.pem"))
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=content-tagger test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    keystore = folder / "keystore.pem"  # Kafka's PEM keystore: the PKCS#8 key, then the certificate chain
    keystore.write_text(key.read_text() + cert.read_text() + ca.read_text())
    return ca, keystore


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("tls")
    ca, keystore = make_certificates(folder)
    port, controller, ssl_port, sasl_port = (free_port() for _ in range(4))
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    properties = folder / "tls.properties"
    properties.write_text(
        textwrap.dedent(f"""\
        listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port},CONTROLLER://127.0.0.1:{controller}
        advertised.listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_port}
        ssl.keystore.type=PEM
        ssl.keystore.location={keystore}
        sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
        listener.name.sasl_ssl.plain.sasl.jaas.config={plain}
        listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}
        """)
    )
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(folder / "kafka"),
        "KAFKA_HEAP": "256m",
        "KAFKA_EXTRA_PROPERTIES": str(properties),
    }
    subprocess.run([KAFKA, "start"], check=True, env=env)
    try:
        add_scram_user(env, f"127.0.0.1:{port}")
        yield SecureBroker(f"127.0.0.1:{port}", f"127.0.0.1:{ssl_port}", f"127.0.0.1:{sasl_port}", ca)
    finally:
        subprocess.run([KAFKA, "stop"], check=True, env=env)


def add_scram_user(env: dict[str, str], bootstrap: str) -> None:
    """Create the SCRAM user with Kafka's own kafka-configs tool, from the jars scripts/kafka fetched."""
    (jars,) = (ROOT / ".cache" / "kafka").glob("jars-*")
    subprocess.run(
        [
            "java",
            "-Xmx128m",
            "-cp",
            f"{jars}/*",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            bootstrap,
            "--alter",
            "--add-config",
            f"SCRAM-SHA-256=[password={PASSWORD}]",
            "--entity-type",
            "users",
            "--entity-name",
            SCRAM_USER,
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=60,
    )


def secure_topics(bootstrap: str) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(*(f"secure-{kind}-{suffix}" for kind in ("content", "tagged", "review", "dup", "dead")))
    for name in (topics.input, *topics.outputs().values()):
        run(create_topic(bootstrap, name, 1, KEPT_FOR_EVER if name == topics.review else None))
    return topics


def events_with(marker: str, count: int) -> list[tuple[bytes | None, bytes | None, int | None]]:
    """Valid events whose title and description carry ``marker``, and malformed ones that carry it too."""
    rows = distinct_rows(dataset_rows())[:count]
    good = [
        (
            f"{marker}-{r['id']}".encode(),
            event_value(
                dict(
                    r,
                    id=f"{marker}-{r['id']}",
                    title=f"{r['title']} {marker}",
                    description=f"{r['description']} {marker}",
                )
            ),
            None,
        )
        for r in rows
    ]
    bad = [
        (None, f'{{"id": "{marker}-bad", "title": 7, "x": "{marker}"}}'.encode(), None),
        (None, f"not json {marker}".encode(), None),
    ]
    return good + bad


@pytest.mark.parametrize(
    ("protocol", "mechanism", "user"),
    [("SSL", "", ""), ("SASL_SSL", "PLAIN", USER), ("SASL_SSL", "SCRAM-SHA-256", SCRAM_USER)],
    ids=["ssl", "sasl-plain", "sasl-scram"],
)
def test_worker_processes_events_over_tls_and_never_logs_their_contents_at_info(
    secure_broker: SecureBroker, start_worker: Any, protocol: str, mechanism: str, user: str
) -> None:
    topics = secure_topics(secure_broker.plaintext)
    credentials = (
        {"TAGGER_SASL_MECHANISM": mechanism, "TAGGER_SASL_USERNAME": user, "TAGGER_SASL_PASSWORD": PASSWORD}
        if user
        else {}
    )
    worker, _ = start_worker(
        topics=topics,
        TAGGER_KAFKA_BOOTSTRAP_SERVERS=secure_broker.ssl if protocol == "SSL" else secure_broker.sasl_ssl,
        TAGGER_SECURITY_PROTOCOL=protocol,
        TAGGER_SSL_CAFILE=str(secure_broker.ca_file),
        **credentials,
    )
    marker = f"MARKER{uuid.uuid4().hex}"
    messages = events_with(marker, 30)
    run(produce(secure_broker.plaintext, topics.input, messages))
    outputs = run(read_outputs(secure_broker.plaintext, topics, len(messages), 90, settle=1.0))

    assert sum(len(v) for v in outputs.values()) == len(messages), worker.log_tail()
    assert len(outputs["deadletter"]) == 2
    assert marker in json.dumps(outputs["tagged"] + outputs["review"])  # the records do carry it
    log = worker.log_text()
    assert "[INFO]" in log
    assert marker not in log, [line for line in log.splitlines() if marker in line][:3]
    assert PASSWORD not in log


@pytest.mark.parametrize("failure", ["wrong-password", "untrusted-ca"])
def test_a_wrong_password_or_an_untrusted_certificate_stops_the_worker_with_a_clear_error(
    secure_broker: SecureBroker, trained_model_dir: Path, tmp_path: Path, failure: str
) -> None:
    topics = secure_topics(secure_broker.plaintext)
    env = {
        "TAGGER_KAFKA_BOOTSTRAP_SERVERS": secure_broker.sasl_ssl,
        "TAGGER_INPUT_TOPIC": topics.input,
        "TAGGER_SECURITY_PROTOCOL": "SASL_SSL",
        "TAGGER_SASL_USERNAME": USER,
        "TAGGER_SASL_PASSWORD": PASSWORD if failure == "untrusted-ca" else "wrong-password",
        "TAGGER_SSL_CAFILE": "" if failure == "untrusted-ca" else str(secure_broker.ca_file),
        "TAGGER_MODEL_DIR": str(trained_model_dir),
        "TAGGER_WEB_PORT": str(free_port()),
        "TAGGER_DATA_DIR": str(tmp_path / "worker"),
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="worker exited"):  # not a hang: start() would time out
        worker.start(timeout=60)
    worker.stop()
    assert worker.process is not None and worker.process.returncode != 0
    expected = "authentication failed" if failure == "wrong-password" else "certificate verify failed"
    errors = [line for line in worker.log_text().splitlines() if "[ERROR]" in line]
    assert any(expected in line.lower() for line in errors), errors
    assert PASSWORD not in worker.log_text() and "wrong-password" not in worker.log_text()
    print(f"{failure}: worker exited in {time.monotonic() - started:.1f} s")
