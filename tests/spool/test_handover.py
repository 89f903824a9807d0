"""Two outputs of the same name on one spool, as a reload makes them: the new one takes over, the old one stops
delivering; when the new one is closed again (the reload failed), the old one resumes."""
from __future__ import annotations

from auoms_py.outputs.forward import ForwardOutput
from auoms_py.service.config import from_dict
from auoms_py.spool import Spool
from tests.outputs.fluent_receiver import ForwardReceiver
from tests.service.agent_proc import wait_until
from tests.spool.feed import events, numbers


def output(path: str, spool_dir) -> ForwardOutput:
    cfg = from_dict({"input": "netlink", "outputs": [{"name": "oms", "type": "forward", "address": f"unix://{path}",
                                                      "retry_interval": 0.05, "retry_max": 0.2}]}).outputs[0]
    return ForwardOutput(cfg.name, cfg.format, cfg.forward, queue=Spool(str(spool_dir)))


def feed(out, start: int, count: int) -> None:
    for event in events(start, count):
        out.write_event(event)
    out.flush()


def test_a_new_output_takes_over_and_a_failed_reload_gives_it_back(tmp_path):
    old_path, new_path = str(tmp_path / "old.socket"), str(tmp_path / "new.socket")
    old = output(old_path, tmp_path / "spool")
    old.open()
    feed(old, 0, 100)  # nobody listens at the old address: they wait in the spool
    assert wait_until(lambda: old.down_since is not None)
    with ForwardReceiver(new_path) as fwd:
        new = output(new_path, tmp_path / "spool")
        new.open()  # the reload opens the new output first: it takes the spool over
        assert new.queue is old.queue
        assert wait_until(lambda: len(fwd.records()) >= 100)
        new.close()  # another output of that reload failed: the new one goes, the old one comes back
    with ForwardReceiver(old_path) as back:
        feed(old, 100, 50)
        assert wait_until(lambda: len(back.records()) >= 50)
        old.close()
    assert numbers(r["cmdline"] for r in fwd.records()) == list(range(100))
    assert numbers(r["cmdline"] for r in back.records()) == list(range(100, 150))
    assert not old.queue.opened  # the last user closed the spool


def test_the_replaced_output_closes_without_touching_the_spool(tmp_path):
    path = str(tmp_path / "fwd.socket")
    with ForwardReceiver(path) as fwd:
        old = output(path, tmp_path / "spool")
        old.open()
        feed(old, 0, 50)
        new = output(path, tmp_path / "spool")
        new.open()
        old.close()  # the reload succeeded: the old output is closed after the new one opened
        assert new.queue.opened
        feed(new, 50, 50)
        assert wait_until(lambda: len(set(numbers(r["cmdline"] for r in fwd.records()))) >= 100)
        new.close()
    got = numbers(r["cmdline"] for r in fwd.records())
    assert sorted(set(got)) == list(range(100))
    assert len(got) - 100 <= old.status()["resent"] + new.status()["resent"]
