"""The forward output against a forward-protocol server written from the Fluentd Forward Protocol Specification v1
(tests/outputs/fluent_receiver.py): Fluentd is not packaged here, so the specification is the peer. Unix socket and
TCP, TLS, acknowledgements, ack loss, a connection closed before the ack, receiver absent and restarted, the
spool between the output and the receiver."""
from __future__ import annotations

import time

import pytest

from auoms_py.outputs.forward import ForwardOutput
from auoms_py.service.config import from_dict
from auoms_py.spool import Spool, SpoolOptions
from tests.outputs.certs import make_certs
from tests.outputs.fluent_receiver import ForwardReceiver
from tests.outputs.rsyslog import free_port
from tests.service.agent_proc import wait_until
from tests.spool.feed import events, numbers


def forward_config(address: str, **keys):
    return from_dict({"input": "netlink", "outputs": [{"name": "fwd", "type": "forward", "address": address,
                                                        **keys}]}).outputs[0]


def make_output(address: str, queue=None, **keys) -> ForwardOutput:
    keys.setdefault("retry_interval", 0.05)
    keys.setdefault("retry_max", 0.2)
    cfg = forward_config(address, **keys)
    out = ForwardOutput(cfg.name, cfg.format, cfg.forward, queue=queue)
    out.open()
    return out


def feed(out: ForwardOutput, start: int, count: int, per_flush: int = 50) -> None:
    batch = events(start, count)
    for i in range(0, len(batch), per_flush):
        for event in batch[i:i + per_flush]:
            out.write_event(event)
        out.flush()


def received_numbers(receiver: ForwardReceiver) -> list[int]:
    return numbers(r.get("cmdline", "") for r in receiver.records())



@pytest.fixture(params=["unix", "tcp"])
def receiver(request, tmp_path):
    if request.param == "unix":
        rec = ForwardReceiver(str(tmp_path / "fwd.socket"))
        rec.url = f"unix://{tmp_path / 'fwd.socket'}"
    else:
        port = free_port()
        rec = ForwardReceiver(("127.0.0.1", port))
        rec.url = f"tcp://127.0.0.1:{port}"
    yield rec
    rec.stop()


def test_every_event_arrives_once_in_order_acknowledged(receiver):
    receiver.start()
    out = make_output(receiver.url, chunk_size=100)
    feed(out, 0, 1000)
    receiver.wait_for(1000)
    assert wait_until(lambda: out.status()["delivered"] == 1000)
    out.close()
    assert receiver.violations == []
    assert received_numbers(receiver) == list(range(1000))
    assert {tag for tag, *_rest in receiver.entries} == {"LINUX_AUDITD_BLOB"}
    assert all(chunk and size <= 100 for chunk, size in receiver.chunks)  # every chunk carried an id
    assert len({chunk for chunk, _size in receiver.chunks}) == len(receiver.chunks)
    record = receiver.records()[0]
    assert record["RecordType"] == "AUOMS_EXECVE" and record["MessageType"] == "AUOMS_EVENT"
    assert record["Computer"] and record["AuditID"].endswith(":1")
    status = out.status()
    assert status["sent"] == status["delivered"] == 1000 and status["resent"] == 0 and status["queued"] == 0


def test_a_lost_ack_makes_the_chunk_go_again_and_only_that_chunk(receiver):
    receiver.start()
    receiver.lose_acks = 1  # the first chunk is taken but its ack never comes
    out = make_output(receiver.url, chunk_size=50, ack_timeout=1.0)
    feed(out, 0, 300)
    assert wait_until(lambda: out.status()["delivered"] == 300, 30)
    out.close()
    got = received_numbers(receiver)
    assert sorted(set(got)) == list(range(300))
    duplicates = len(got) - len(set(got))
    assert 0 < duplicates <= out.status()["resent"]  # nothing arrives twice beyond what was sent again
    assert receiver.connections >= 2 and receiver.violations == []


def test_connection_closed_before_the_ack_loses_nothing(receiver):
    receiver.start()
    receiver.close_after_chunks = 3
    out = make_output(receiver.url, chunk_size=40)
    feed(out, 0, 400)
    assert wait_until(lambda: out.status()["delivered"] == 400, 30)
    out.close()
    got = received_numbers(receiver)
    assert sorted(set(got)) == list(range(400))
    assert len(got) - len(set(got)) <= out.status()["resent"]
    assert out.status()["reconnects"] >= 1


def test_receiver_absent_at_start_then_restarted_midway(receiver, tmp_path):
    out = make_output(receiver.url, queue=Spool(str(tmp_path / "spool"), SpoolOptions()), chunk_size=64)
    feed(out, 0, 200)
    assert wait_until(lambda: out.down_since is not None)
    receiver.start()
    assert wait_until(lambda: out.status()["delivered"] == 200, 30)
    receiver.stop()
    feed(out, 200, 300)  # written while the receiver is gone: kept in the spool
    time.sleep(0.5)
    assert out.status()["spool_depth"] >= 300 - 64
    receiver.start()
    assert wait_until(lambda: out.status()["delivered"] >= 500, 30)
    out.close()
    got = received_numbers(receiver)
    assert sorted(set(got)) == list(range(500))
    assert len(got) - len(set(got)) <= out.status()["resent"]


def test_spooled_events_are_delivered_by_the_next_output_on_the_same_spool(tmp_path):
    """What a stopped agent leaves in its spool goes out after the next start."""
    path = str(tmp_path / "fwd.socket")
    spool_dir = str(tmp_path / "spool")
    out = make_output(f"unix://{path}", queue=Spool(spool_dir), drain_timeout=0.2)
    feed(out, 0, 250)
    out.close()
    assert out.status()["undelivered"] == 250
    with ForwardReceiver(path) as receiver:
        again = make_output(f"unix://{path}", queue=Spool(spool_dir))
        receiver.wait_for(250)
        assert wait_until(lambda: again.status()["queued"] == 0)
        again.close()
    assert received_numbers(receiver) == list(range(250))


def test_without_require_ack_no_chunk_id_is_sent_and_delivery_still_completes(tmp_path):
    path = str(tmp_path / "fwd.socket")
    with ForwardReceiver(path) as receiver:
        out = make_output(f"unix://{path}", require_ack=False)
        feed(out, 0, 300)
        receiver.wait_for(300)
        assert wait_until(lambda: out.status()["delivered"] == 300)
        out.close()
    assert {chunk for chunk, _size in receiver.chunks} == {None}
    assert received_numbers(receiver) == list(range(300))


def test_json_format_and_eventtime(tmp_path):
    path = str(tmp_path / "fwd.socket")
    with ForwardReceiver(path) as receiver:
        out = make_output(f"unix://{path}", format="json", time_as_integer=False, tag="audit.json")
        feed(out, 0, 10)
        receiver.wait_for(10)
        out.close()
    assert receiver.violations == []
    tag, when, record, _at = receiver.entries[0]
    assert tag == "audit.json" and record["type"] == "AUOMS_EXECVE" and record["argv"][1] == "evt-0000000"
    assert when.code == 0  # EventTime


def test_a_handshake_the_output_cannot_do_is_reported(tmp_path, caplog):
    path = str(tmp_path / "fwd.socket")
    with ForwardReceiver(path) as receiver:
        receiver.send_helo = True
        out = make_output(f"unix://{path}", drain_timeout=0.5)
        feed(out, 0, 5)
        assert wait_until(lambda: out.down_since is not None)
        out.close()
    assert "shared-key authentication" in caplog.text
    assert out.status()["delivered"] == 0 and out.status()["undelivered"] == 5


def test_tls_with_client_certificate(tmp_path):
    import ssl

    certs = make_certs(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs["ca"])
    ctx.load_cert_chain(certs["server"], certs["server_key"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    port = free_port()
    with ForwardReceiver(("127.0.0.1", port), ssl_context=ctx) as receiver:
        out = make_output(f"tcp://127.0.0.1:{port}",
                          tls={"ca": certs["ca"], "cert": certs["client"], "key": certs["client_key"]})
        feed(out, 0, 200)
        receiver.wait_for(200)
        assert wait_until(lambda: out.status()["delivered"] == 200)
        out.close()
    assert received_numbers(receiver) == list(range(200))
