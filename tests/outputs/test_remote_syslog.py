"""Remote syslog to a real rsyslog imtcp listener on loopback: RFC 6587 octet counting, TLS through rsyslog's gtls
netstream driver (Debian's rsyslog-gnutls; certificates made with openssl here), reconnect, and no loss across
receiver restarts while messages flow, with the spool between the output and the receiver."""
from __future__ import annotations

import glob
import os
import threading
import time

import pytest

from auoms_py.outputs.syslog import SyslogOutput
from auoms_py.service.config import from_dict
from auoms_py.spool import Spool
from tests.outputs.certs import make_certs
from tests.outputs.rsyslog import RSYSLOGD, Rsyslog, free_port
from tests.service.agent_proc import wait_until
from tests.spool.feed import numbers

pytestmark = pytest.mark.skipif(not os.path.exists(RSYSLOGD), reason="rsyslogd not installed (make deps)")
needs_gtls = pytest.mark.skipif(not glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"),
                                reason="rsyslog-gnutls not installed (make deps)")


class TlsRsyslog(Rsyslog):
    """rsyslogd with an imtcp listener on the gtls driver: `anon` (the client checks the server only) or
    `x509/certvalid` (the client must show a certificate of our CA)."""

    def __init__(self, directory, port: int, certs: dict, auth: str = "anon"):
        super().__init__(directory, unix_socket=False)
        self.tcp_port = port
        lines = self.conf.read_text().splitlines()
        lines[1:1] = [
            f'global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{certs["ca"]}" '
            f'DefaultNetstreamDriverCertFile="{certs["server"]}" DefaultNetstreamDriverKeyFile="{certs["server_key"]}")',
            f'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth}")',
            f'input(type="imtcp" address="127.0.0.1" port="{port}")',
        ]
        self.conf.write_text("\n".join(lines) + "\n")


def central(address: str, spool_dir=None, **keys) -> SyslogOutput:
    """The issue's key, as written: {name: central, type: syslog, format: mstic, address: "tcp://..."}."""
    keys.setdefault("retry_interval", 0.05)
    keys.setdefault("retry_max", 0.3)
    cfg = from_dict({"input": "netlink", "outputs": [
        {"name": "central", "type": "syslog", "format": "mstic", "address": address, **keys}]}).outputs[0]
    out = SyslogOutput(cfg.name, cfg.format, cfg.syslog, queue=Spool(str(spool_dir)) if spool_dir else None)
    out.open()
    return out


def bodies(start: int, count: int) -> list[bytes]:
    return [b"type=TEST audit(1.000:%d): msg=evt-%07d containerid=" % (n, n) for n in range(start, start + count)]


def received(rs: Rsyslog) -> list[int]:
    return numbers(m for *_rest, m in rs.messages())


def flow_with_restarts(out: SyslogOutput, rs: Rsyslog, total: int, restarts: int, kill: bool = False) -> None:
    """Write `total` messages over a few seconds while the receiver is stopped and started `restarts` times."""
    def writer():
        for i in range(0, total, 200):
            out.write_messages(bodies(i, 200))
            out.flush()
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(restarts):
        time.sleep(0.6)
        if kill:  # a crash: no chance to read what is in its socket buffer
            rs.proc.kill()
            rs.proc.wait()
            rs.proc.stderr.close()
            rs.proc = None
        else:
            rs.stop()
        time.sleep(0.4)
        rs.start()
    thread.join()


def test_octet_counting_carries_a_message_with_a_newline_whole(tmp_path):
    port = free_port()
    with Rsyslog(tmp_path / "rs", unix_socket=False, tcp_port=port) as rs:
        out = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool", hostname="web01")
        out.write_messages([b"first line\nsecond line", *bodies(0, 50)])
        out.flush()
        got = rs.wait_for(51)
        out.close()
    assert len(got) == 51  # newline framing would have made two messages of the first
    assert got[0][4] == b" first line#012second line"  # rsyslog shows the control character escaped
    assert [(f, s, p, h) for f, s, p, h, _m in got] == [("user", "info", "auoms", "web01")] * 51
    assert received(rs) == list(range(50))


def assert_restarts_lose_nothing(out: SyslogOutput, rs: Rsyslog, total: int, restarts: int, kill: bool) -> None:
    try:
        flow_with_restarts(out, rs, total, restarts, kill)
        assert wait_until(lambda: out.status()["queued"] == 0, 60)
        rs.wait_for(total, 30)
        out.close()
    finally:
        rs.stop()
    got = received(rs)
    assert sorted(set(got)) == list(range(total))  # every message
    duplicates = len(got) - len(set(got))
    assert duplicates <= out.status()["resent"]  # and twice only what was sent again after a broken connection
    assert out.status()["reconnects"] >= 1


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_no_loss_across_receiver_restarts_while_messages_flow(tmp_path, kill):
    port = free_port()
    rs = Rsyslog(tmp_path / "rs", unix_socket=False, tcp_port=port).start()
    out = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool")
    assert_restarts_lose_nothing(out, rs, 40_000, 3, kill)


@needs_gtls
@pytest.mark.parametrize("auth", ["anon", "x509/certvalid"])
def test_tls_to_rsyslog_gtls(tmp_path, auth):
    certs = make_certs(tmp_path)
    port = free_port()
    tls = {"ca": certs["ca"]}
    if auth != "anon":
        tls.update(cert=certs["client"], key=certs["client_key"])
    with TlsRsyslog(tmp_path / "rs", port, certs, auth) as rs:
        out = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool", tls=tls)
        assert out.describe().endswith("with TLS)")
        out.write_messages(bodies(0, 2000))
        out.flush()
        rs.wait_for(2000)
        assert wait_until(lambda: out.status()["delivered"] == 2000)
        out.close()
    assert received(rs) == list(range(2000))


@needs_gtls
def test_tls_no_loss_across_receiver_restarts(tmp_path):
    certs = make_certs(tmp_path)
    port = free_port()
    rs = TlsRsyslog(tmp_path / "rs", port, certs).start()
    out = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool", tls={"ca": certs["ca"]})
    assert_restarts_lose_nothing(out, rs, 20_000, 2, kill=False)


@needs_gtls
def test_tls_refusals_are_reported_and_nothing_is_lost(tmp_path, caplog):
    """A server certificate our CA did not sign, then a receiver that wants a client certificate we do not have:
    both reported, the messages stay in the spool and go out once the configuration is right."""
    certs = make_certs(tmp_path)
    port = free_port()
    with TlsRsyslog(tmp_path / "rs", port, certs, "x509/certvalid") as rs:
        wrong_ca = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool", tls={"ca": certs["other-ca"]},
                           drain_timeout=0.3)
        wrong_ca.write_messages(bodies(0, 100))
        wrong_ca.flush()
        assert wait_until(lambda: wrong_ca.down_since is not None)
        wrong_ca.close()
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        no_client_cert = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool", tls={"ca": certs["ca"]},
                                 drain_timeout=0.5)
        time.sleep(1.5)
        assert no_client_cert.status()["delivered"] == 0
        no_client_cert.close()
        assert rs.messages() == []
        good = central(f"tcp://127.0.0.1:{port}", tmp_path / "spool",
                       tls={"ca": certs["ca"], "cert": certs["client"], "key": certs["client_key"]})
        rs.wait_for(100)
        good.close()
    assert received(rs) == list(range(100))
