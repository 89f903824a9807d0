"""The agent: one collector feeding the pipeline, filters, and every configured output, in one loop.

    collector --records--> pipeline --events--> filters --> outputs (each in its own format)

Start (nothing starts half-configured): the configuration was validated as a whole before we get here; then the
pipeline, filters and rules are prepared (files read and checked, nothing touched), the outputs opened, and only
then the collector (which may register with the kernel), and the rules applied. A failure at any step undoes the
steps before it and ends with a message.

The loop waits with poll() and a timeout on the collector's descriptor and on a self-pipe written by the signal
handlers, so SIGTERM/SIGINT/SIGHUP are handled at once, and drives `pipe.tick(now)` on a timer so that events
without their EOE record come out while the input is idle.

Signals: SIGTERM and SIGINT stop (kernel state restored, pipeline flushed, outputs drained); SIGHUP reopens the
output files (logrotate) and reloads the configuration: a broken new file is reported and the running
configuration kept; changed outputs are replaced, rules re-applied, filters re-read; a changed input or pipeline
section takes effect at the next start. SIGUSR1 logs the metrics line at once.

Filters (`filters:`, auoms_py.filters): every event goes through `Filters.process` (process tree: container id,
parent; then the process filters), then each output's own record-type/field drops. A broken filter file stops the
start with its file:line; a missing one filters nothing (the process tree still runs). The file is watched and
reloaded on change (and on SIGHUP); a broken edit keeps the last good filters.

Rules (`rules_dir:`, auoms_py.rules): synced into the kernel once the collector runs (owner key
`rules_owner_key`), then watched: an edit is applied within a second, a rule deleted behind our back is put back
within 15 s. Problems are logged as file:line. `remove_rules_on_exit: true` deletes the agent's own rules at exit.

Service (docs/service.md): systemd is told READY=1 once collection runs, STATUS= lines, RELOADING=1/READY=1 around
a reload, STOPPING=1; WATCHDOG=1 every half WatchdogSec while the loop turns and the collector is alive (its source
open and still ours: for netlink, the kernel's audit pid is the agent's).
Health (`health()`: the input, each output's receiver, rules, filters, the last reload, recent loss) goes out as
AUOMS_STATUS events (at start, on change, every status_interval, at stop), the counters as AUOMS_METRIC events
every metrics_interval (auoms_py.service.selfreport); both bypass the process filters. `auoms-py ctl status` asks
the control socket (auoms_py.service.control), served from this loop. Files that other users can write (config,
filters, rules) are refused (auoms_py.service.hygiene). SIGTERM: the kernel is restored first, then the pipeline
flushed and all outputs drained in parallel; the whole stop is bounded by stop_timeout (then the agent exits,
what is undelivered staying in the spool).
"""
from __future__ import annotations

import logging
import os
import resource
import select
import signal
import threading
import time

from auoms_py.collect.base import Collector, CollectorError
from auoms_py.outputs.base import Output, build_outputs
from auoms_py.service import metrics, selfreport
from auoms_py.service.config import Config, ConfigError, load
from auoms_py.service.control import ControlError, ControlServer
from auoms_py.service.hygiene import untrusted
from auoms_py.service.notify import notify, watchdog_interval

log = logging.getLogger("auoms_py.agent")

PERIODIC_EVERY = 0.5  # seconds between collector housekeeping calls
HEALTH_EVERY = 1.0  # seconds between health evaluations (status changes are reported within this)
GATHER_SECONDS = 0.005  # after a read of fewer than GATHER_RECORDS records, wait this long before the next one
GATHER_RECORDS = 64
LOSS_RECENT = 300.0  # seconds a loss keeps the agent `degraded`


class StartError(Exception):
    """The agent could not start; the message is for the operator."""


def build_collector(config: Config) -> Collector:
    inp = config.input
    if inp.type == "netlink":
        from auoms_py.collect.netlink import NetlinkCollector
        return NetlinkCollector(backlog_limit=inp.backlog_limit, backlog_wait_time=inp.backlog_wait_time,
                                enable=inp.enable, receive_buffer=inp.receive_buffer,
                                status_interval=inp.status_interval)
    if inp.type == "multicast":
        from auoms_py.collect.multicast import MulticastCollector
        return MulticastCollector(inp.receive_buffer, inp.status_interval)
    if inp.type == "plugin":
        from auoms_py.collect.plugin import PluginCollector
        return PluginCollector()
    if inp.type == "file":
        from auoms_py.collect.file import FileCollector
        return FileCollector(inp.path, config.data_dir, once=inp.once, poll_interval=inp.poll_interval)
    raise ValueError(f"unknown input type {inp.type!r}")


def build_pipeline(config: Config):
    from auoms_py.pipeline import Pipeline, UserDB

    pc = config.pipeline
    return Pipeline(userdb=UserDB(pc.passwd, pc.group), flush_timeout=pc.flush_timeout,
                    max_open_events=pc.max_open_events)


def load_filters(config: Config, userdb):
    """The Filters for `filters:` (a missing file: no filters, but the process tree still gives container ids and
    parents). Raises ValueError (FilterConfigError) naming file:line for a broken file."""
    from auoms_py.filters import Filters

    path = config.filters
    if path and not os.path.exists(path):
        log.info("filters: %s does not exist; no events are filtered", path)
        path = None
    live = config.input.type != "file" or not config.input.once  # this host's /proc describes the events
    filters = Filters(path, live=live, userdb=userdb, trust_check=untrusted, connector_thread=False)
    if path:
        filters.watch()
    return filters


class Agent:
    def __init__(self, config: Config, *, config_path: str | None = None, input_override: dict | None = None):
        self.config = config
        self.config_path = config_path or config.source
        self.input_override = input_override  # CLI --input, re-applied on reload
        self.pipe = None
        self.collector: Collector | None = None
        self.outputs: list[Output] = []
        self._output_configs: dict[str, tuple] = {}  # name -> (OutputConfig, Output)
        self.filters = None  # auoms_py.filters.Filters
        self.rules = None  # auoms_py.rules.sync.RulesSync
        self.rules_watcher = None
        self.counters = {"events": 0, "filtered": 0, "reloads": 0, "reload_failures": 0, "event_errors": 0,
                         "input_pauses": 0, "self_events": 0}
        self.control: ControlServer | None = None
        self.reload_error: str | None = None  # why the last reload was refused (until one succeeds)
        self.stopping = False
        self._health_keys: frozenset | None = None
        self._loss_total = 0
        self._loss_at: float | None = None
        self._metric_reporter: selfreport.MetricReporter | None = None
        self.started = time.monotonic()
        self._stop_signal: int | None = None
        self._reload = False
        self._report_now = False
        self._wake_r = self._wake_w = -1
        self._old_handlers: dict = {}
        self._old_wakeup = -1
        self._event_errors_logged = 0

    # ---- start ----------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare everything, open outputs, then the collector, then apply rules. Raises StartError (after undoing
        what was done) when a step fails."""
        cfg = self.config
        try:
            self.pipe = build_pipeline(cfg)
            self._make_data_dir(cfg)
            outputs = build_outputs(cfg.outputs, cfg.data_dir)
            collector = build_collector(cfg)
            self._prepare_rules(cfg)
            self.filters = load_filters(cfg, self.pipe.userdb)
        except (OSError, ValueError, ImportError) as exc:
            self._close_rules_and_filters()
            raise StartError(str(exc)) from None
        opened: list[Output] = []
        try:
            for out, out_cfg in zip(outputs, cfg.outputs):
                try:
                    out.open()
                except OSError as exc:
                    raise StartError(f"{out.describe()}: cannot open: {exc.strerror or exc}") from None
                opened.append(out)
                self._output_configs[out.name] = (out_cfg, out)
            self.outputs = opened
            self._open_control(cfg)
            try:
                collector.open()
            except CollectorError as exc:
                raise StartError(str(exc)) from None
            except OSError as exc:
                raise StartError(f"{collector.describe()}: {exc}") from None
            self.collector = collector
            self._apply_rules()
        except BaseException:
            if self.collector is not None:
                self.collector.close(self.pipe, time.monotonic())
                self.collector = None
            for out in opened:
                out.close()
            self.outputs = []
            self._close_control()
            self._close_rules_and_filters()
            raise
        self._metric_reporter = selfreport.MetricReporter(cpu_seconds=metrics.snapshot(self)["process"]["cpu_seconds"])
        log.info("started: %s -> %s", collector.describe(), ", ".join(o.describe() for o in self.outputs))

    def _open_control(self, cfg: Config) -> None:
        if not cfg.control_socket:
            return
        control = ControlServer(cfg.control_socket)
        try:
            control.open()
        except ControlError as exc:
            raise StartError(str(exc)) from None
        self.control = control

    def _close_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None

    def _make_data_dir(self, cfg: Config) -> None:
        try:
            os.makedirs(cfg.data_dir, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise OSError(f"data_dir: cannot create {cfg.data_dir}: {exc.strerror}") from None

    def _prepare_rules(self, cfg: Config) -> None:
        """Read and check the rules directory; problems are logged with file:line (the good rules still load)."""
        if not cfg.rules_dir:
            return
        from auoms_py.rules.sync import RulesSync

        self.rules = RulesSync(cfg.rules_dir, owner_key=cfg.rules_owner_key, backlog_limit=None, trust_check=untrusted)
        if not os.path.isdir(cfg.rules_dir):
            log.info("rules_dir %s does not exist: no rules loaded (it is watched: creating it loads them)",
                     cfg.rules_dir)
            return
        parsed = self.rules.read_rules()
        for problem in parsed.errors:
            log.error("rules: %s", problem)

    def _apply_rules(self) -> None:
        """First sync now (the rules are in before the loop starts), then keep them in sync."""
        if self.rules is None:
            return
        from auoms_py.rules.watch import RulesWatcher

        self._rules_report(self.rules.sync(), first=True)
        self.rules_watcher = RulesWatcher(self.rules, on_report=self._rules_report)
        self.rules_watcher.start()

    def _rules_report(self, report, first: bool = False) -> None:
        if first or report.changed:
            log.info("rules %s: %s", self.rules.rules_path, report.summary().splitlines()[0])
        for problem in report.errors:
            log.error("rules: %s", problem)
        for problem in report.warnings:
            log.warning("rules: %s", problem)

    def _stop_rules(self) -> None:
        if self.rules_watcher is not None:
            self.rules_watcher.stop()
            self.rules_watcher = None
        if self.rules is not None:
            if self.config.remove_rules_on_exit and self.collector is not None:
                try:
                    removed = self.rules.remove_owned()
                    log.info("rules: %d rule(s) of owner %r removed", len(removed), self.rules.owner_key)
                except OSError as exc:
                    log.error("rules: cannot remove our rules: %s", exc)
            self.rules.close()
            self.rules = None

    def _close_rules_and_filters(self) -> None:
        self._stop_rules()
        if self.filters is not None:
            self.filters.close()
            self.filters = None

    # ---- loop -----------------------------------------------------------------------------------------------------

    def install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_hup), (signal.SIGUSR1, self._on_usr1)):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self._wake_w >= 0:
            signal.set_wakeup_fd(self._old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _on_stop(self, signum, _frame) -> None:
        self._stop_signal = signum

    def _on_hup(self, _signum, _frame) -> None:
        self._reload = True

    def _on_usr1(self, _signum, _frame) -> None:
        self._report_now = True

    def stop(self) -> None:
        """Ask the loop to end (from a signal handler or another thread)."""
        self._stop_signal = self._stop_signal or -1
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass

    def loop(self) -> None:
        collector = self.collector
        pipe = self.pipe
        poller = select.poll()
        paused_poller = select.poll()  # a full spool with `when_full: block` stops the input
        for p in (poller, paused_poller):
            if self._wake_r >= 0:
                p.register(self._wake_r, select.POLLIN)
            if self.control is not None:
                p.register(self.control.fileno(), select.POLLIN)
        control_fd = self.control.fileno() if self.control is not None else -2
        fd = collector.fileno()
        if fd is not None:
            poller.register(fd, select.POLLIN)
        tick_every = max(0.02, min(0.25, self.config.pipeline.flush_timeout / 2))
        now = time.monotonic()
        next_tick = now + tick_every
        next_periodic = now
        next_read = now  # collectors without a descriptor are read on a timer
        next_metrics = now + self.config.metrics_interval if self.config.metrics_interval else float("inf")
        next_metrics_file = now + 5.0
        next_health = now
        next_status = now + self.config.status_interval if self.config.status_interval else float("inf")
        watchdog_every = watchdog_interval()
        next_watchdog = now if watchdog_every else float("inf")
        paused = False
        while self._stop_signal is None:
            if any(out.input_paused for out in self.outputs) != paused:
                paused = not paused
                self._input_paused(paused)
            if collector.has_more and not paused:
                timeout_ms = 0
            else:
                deadline = min(next_tick, next_periodic, next_metrics, next_read if fd is None else next_tick,
                               next_watchdog)
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            ready = (paused_poller if paused else poller).poll(min(timeout_ms, 200) if paused else timeout_ms)
            input_ready = False
            for rfd, _mask in ready:
                if rfd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif rfd == control_fd:
                    self.control.serve(self.control_answer)
                else:
                    input_ready = True
            now = time.monotonic()
            events = None
            gather = False
            if self.filters is not None:
                # forks and exits first: the process connector runs ahead of audit, so the tree knows of a
                # short-lived program's exit before its execve event (no /proc read for it)
                self.filters.drain_connector()
            if not paused and (input_ready or collector.has_more or (fd is None and now >= next_read)):
                records_before = collector.counters["records"]
                events = collector.read(pipe, now)
                if fd is None:
                    next_read = now + collector.poll_interval
                # a trickle (an exec storm's records come a few at a time) would cost a whole turn of this loop,
                # output flushes included, per few records: let them gather for a moment before the next read
                gather = input_ready and collector.counters["records"] - records_before < GATHER_RECORDS
            if now >= next_tick:
                ticked = pipe.tick(now)
                if ticked:
                    events = ticked if not events else events + ticked
                next_tick = now + tick_every
            if events:
                self.dispatch(events)
            if now >= next_periodic:
                collector.periodic(now)
                next_periodic = now + PERIODIC_EVERY
                if now >= next_metrics_file:
                    self._write_metrics_file()
                    next_metrics_file = now + 5.0
            if now >= next_health:
                next_health = now + HEALTH_EVERY
                health = self.health(now)
                keys = frozenset(health["errors"])
                if keys != self._health_keys:
                    first = self._health_keys is None
                    self._health_keys = keys
                    self._health_changed(health, "start" if first else "change")
            if now >= next_status:
                self.send_status("periodic")
                interval = self.config.status_interval
                next_status = now + interval if interval else float("inf")
            if now >= next_watchdog:
                # only while the loop turns (we are here) and the input collects: a stuck loop or a dead input
                # lets systemd's watchdog restart the service
                if collector.alive():
                    notify("WATCHDOG=1")
                next_watchdog = now + watchdog_every
            if now >= next_metrics or self._report_now:
                self._report_now = False
                snap = metrics.snapshot(self)
                log.info("metrics: %s", metrics.summary(snap))
                if now >= next_metrics:
                    self._send_metrics(snap)
                interval = self.config.metrics_interval
                next_metrics = now + interval if interval else float("inf")
            for out in self.outputs:
                out.flush()
            if self._reload:
                self._reload = False
                old_intervals = (self.config.metrics_interval, self.config.status_interval)
                self.reload()
                if (self.config.metrics_interval, self.config.status_interval) != old_intervals:
                    next_metrics = now + self.config.metrics_interval if self.config.metrics_interval else float("inf")
                    next_status = now + self.config.status_interval if self.config.status_interval else float("inf")
            if collector.finished and not collector.has_more:
                log.info("%s: input ended", collector.describe())
                break
            if gather and self._stop_signal is None:
                time.sleep(GATHER_SECONDS)

    # ---- health, self-report events, control socket -------------------------------------------------------------

    def health(self, now: float | None = None) -> dict:
        """How the agent is doing: `status` healthy or degraded, `errors` {category: message} (AUOMS_STATUS,
        `ctl status`, systemd's STATUS=)."""
        now = time.monotonic() if now is None else now
        errors: dict[str, str] = {}
        outputs: dict[str, str] = {}
        if self.collector is not None:
            problem = self.collector.problem()
            if problem:
                errors["input"] = problem
        full = [out.name for out in self.outputs if out.input_paused]
        if full:
            errors["input_paused"] = (f"input paused: the spool of {', '.join(full)} is full (when_full: block); "
                                      f"the kernel counts what it cannot queue")
        dropped = 0
        for out in self.outputs:
            problem = out.problem()
            outputs[out.name] = "down" if problem else "up"
            if problem:
                errors[f"output {out.name}"] = problem
            dropped += out.counters.get("dropped", 0)
        report = self.rules.last_report if self.rules is not None else None
        if report is not None and report.errors:
            errors["rules"] = f"{len(report.errors)} problem(s) in the audit rules, first: {report.errors[0]}"
        if self.filters is not None and self.filters.last_error:
            errors["filters"] = f"filter file not reloaded, the last good filters run: {self.filters.last_error}"
        if self.reload_error:
            errors["config"] = f"last reload refused, the running configuration stays: {self.reload_error}"
        lost = self.collector.counters.get("lost", 0) if self.collector is not None else 0
        if lost + dropped > self._loss_total:
            self._loss_total = lost + dropped
            self._loss_at = now
        if self._loss_at is not None and now - self._loss_at < LOSS_RECENT:
            errors["loss"] = (f"events lost in the last {LOSS_RECENT / 60:.0f} minutes: {lost} input record(s) lost "
                              f"(kernel/socket), {dropped} output message(s) dropped since start")
        status = "stopping" if self.stopping else ("degraded" if errors else "healthy")
        return {"status": status, "errors": errors, "outputs": outputs, "pid": os.getpid(),
                "uptime": now - self.started, "input": self.collector.describe() if self.collector else "none"}

    def _health_changed(self, health: dict, reason: str) -> None:
        if health["errors"]:
            for category, message in health["errors"].items():
                log.warning("health: %s: %s", category, message)
        elif reason != "start":
            log.info("health: healthy again")
        notify(f"STATUS={self._status_line(health)}")
        self.send_status(reason, health)

    def _status_line(self, health: dict) -> str:
        if health["errors"]:
            return f"{health['status']}: " + "; ".join(f"{k}: {v}" for k, v in health["errors"].items())[:400]
        return f"{health['status']}: collecting from {health['input']} to {len(self.outputs)} output(s)"

    def send_status(self, reason: str, health: dict | None = None) -> None:
        if self.config.self_events and (self.config.status_interval or reason != "periodic"):
            self.dispatch_self(selfreport.status_event(health or self.health(), reason))

    def _send_metrics(self, snap: dict) -> None:
        if self.config.self_events and self._metric_reporter is not None:
            self.dispatch_self(self._metric_reporter.event(snap))

    def dispatch_self(self, event: list) -> None:
        """The agent's own events: to every output, past the process filters (they describe no process), through
        each output's record-type drops."""
        self.counters["self_events"] += 1
        filters = self.filters
        for out in self.outputs:
            try:
                records = filters.output(out.name).apply(event) if filters is not None else event
                if records:
                    out.write_event(records)
            except Exception as exc:  # noqa: BLE001 - never let the report stop the agent
                self._event_failed(out, event, exc)

    def control_answer(self, command: str) -> dict:
        snap = metrics.snapshot(self)
        if command == "metrics":
            return snap
        return {"health": self.health(), "metrics": snap, "version": selfreport.__version__,
                "config": self.config_path, "data_dir": self.config.data_dir}

    def _input_paused(self, paused: bool) -> None:
        if paused:
            self.counters["input_pauses"] += 1
            full = [out.name for out in self.outputs if out.input_paused]
            log.warning("input paused: the spool of %s is full (when_full: block); the kernel counts what it cannot "
                        "queue meanwhile", ", ".join(full))
        else:
            log.warning("input resumed")

    def dispatch(self, events: list) -> None:
        filters = self.filters
        outputs = self.outputs
        counters = self.counters
        for event in events:
            if filters is not None:
                try:
                    if not filters.process(event):
                        counters["filtered"] += 1
                        continue
                except Exception as exc:  # noqa: BLE001 - a filter bug must not stop the agent: keep the event
                    self._event_failed(None, event, exc)
            counters["events"] += 1
            for out in outputs:
                try:
                    records = filters.output(out.name).apply(event) if filters is not None else event
                    if records:
                        out.write_event(records)
                except Exception as exc:  # noqa: BLE001 - one event a formatter chokes on must not stop the agent
                    self._event_failed(out, event, exc)

    def _event_failed(self, out: Output | None, event, exc: Exception) -> None:
        self.counters["event_errors"] += 1
        if out is not None:
            out.counters["errors"] += 1
        self._event_errors_logged += 1
        if self._event_errors_logged <= 10:
            log.exception("%s: event %s: %s", out.describe() if out else "filters",
                          event[0].event_id if event else "?", exc)

    # ---- reload ---------------------------------------------------------------------------------------------------

    def reload(self) -> None:
        notify("RELOADING=1")
        for out in self.outputs:
            out.reopen()
        try:
            refused = untrusted(self.config_path)
            if refused:
                raise ConfigError(self.config_path, [refused.removeprefix(f"{self.config_path}: ")])
            new = load(self.config_path)
            if self.input_override:
                apply_input_override(new, self.input_override)
        except ConfigError as exc:
            self._reload_failed(f"{exc}")
            log.error("reload: %s\n  keeping the running configuration", exc)
            return
        old = self.config
        if new.input != old.input:
            log.warning("reload: the input section changed; that takes effect at the next start")
        if new.pipeline != old.pipeline or new.data_dir != old.data_dir:
            log.warning("reload: pipeline/data_dir changed; that takes effect at the next start")
        new_filters = None
        appeared = (new.filters and self.filters is not None and self.filters.path is None
                    and os.path.exists(new.filters))
        if new.filters != old.filters or appeared:
            try:
                new_filters = load_filters(new, self.pipe.userdb)  # another file, or the file appeared
            except (OSError, ValueError) as exc:
                self._reload_failed(str(exc))
                log.error("reload: %s; keeping the running configuration", exc)
                return
        problem = self._swap_outputs(new)
        if problem:
            self._reload_failed(problem)
            if new_filters is not None:
                new_filters.close()
            return
        if new_filters is not None:
            old_filters, self.filters = self.filters, new_filters
            if old_filters is not None:
                old_filters.close()  # its file watcher and process connector
        elif self.filters is not None and self.filters.path:
            self.filters.reload()  # a broken file keeps the last good filters (and says why)
        set_log_level(new.log_level)
        if new.control_socket != old.control_socket:
            log.warning("reload: control_socket changed; that takes effect at the next start")
        if new.log_file != old.log_file:
            log.warning("reload: log_file changed; that takes effect at the next start")
        new.input, new.pipeline, new.data_dir, new.control_socket = (old.input, old.pipeline, old.data_dir,
                                                                      old.control_socket)
        if new.memory_limit != old.memory_limit:
            apply_memory_limit(new.memory_limit)
        self.config = new
        self.reload_error = None
        if (new.rules_dir, new.rules_owner_key) != (old.rules_dir, old.rules_owner_key):
            self._stop_rules()
            try:
                self._prepare_rules(new)
                self._apply_rules()
            except Exception as exc:  # noqa: BLE001 - a bad rule file must not stop a running agent
                log.error("reload: rules not applied: %s", exc)
        elif self.rules_watcher is not None:
            self.rules_watcher.trigger()
        self.counters["reloads"] += 1
        log.info("reload: configuration %s applied", self.config_path)
        notify("READY=1")

    def _reload_failed(self, why: str) -> None:
        self.counters["reload_failures"] += 1
        self.reload_error = why.splitlines()[0] if why else "?"
        notify("READY=1")

    def _swap_outputs(self, new: Config) -> str | None:
        """Keep outputs whose configuration is unchanged; open the new and changed ones first (all or nothing),
        then close those that went away. Returns the problem when it cannot (nothing changed then)."""
        keep: dict[str, tuple] = {}
        fresh: list[tuple] = []
        for out_cfg in new.outputs:
            current = self._output_configs.get(out_cfg.name)
            if current is not None and current[0] == out_cfg:
                keep[out_cfg.name] = current
            else:
                fresh.append(out_cfg)
        opened: list[tuple] = []
        try:
            built = build_outputs(fresh, self.config.data_dir)
            for out_cfg, out in zip(fresh, built):
                out.open()
                opened.append((out_cfg, out))
        except (OSError, ValueError, ImportError) as exc:
            log.error("reload: output cannot be opened (%s); keeping the running configuration", exc)
            for _cfg, out in opened:
                out.close()
            return f"output cannot be opened ({exc})"
        retired = [pair for name, pair in self._output_configs.items() if name not in keep]
        by_name = dict(keep)
        by_name.update((cfg.name, (cfg, out)) for cfg, out in opened)
        self._output_configs = {cfg.name: by_name[cfg.name] for cfg in new.outputs}
        self.outputs = [pair[1] for pair in self._output_configs.values()]
        for _cfg, out in retired:
            out.close()
        return None

    # ---- stop -----------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Restore the kernel, flush the pipeline, report, drain the outputs (all at once). Safe to call after a
        failed loop."""
        now = time.monotonic()
        events: list = []
        self.stopping = True
        self._close_control()
        if self.rules_watcher is not None:
            self.rules_watcher.stop()
            self.rules_watcher = None
        if self.collector is not None:
            try:
                events.extend(self.collector.close(self.pipe, now))
            except Exception:  # noqa: BLE001
                log.exception("%s: error while closing", self.collector.describe())
        if self.pipe is not None:
            try:
                events.extend(self.pipe.flush())
            except Exception:  # noqa: BLE001
                log.exception("pipeline: error while flushing")
        if events and self.outputs:
            self.dispatch(events)
        if self.collector is not None and self.outputs:
            try:
                if self.config.metrics_interval:
                    self._send_metrics(metrics.snapshot(self))
                self.send_status("stop")
            except Exception:  # noqa: BLE001
                log.exception("final metrics/status not sent")
        self._close_outputs()
        if self.collector is not None:
            log.info("metrics: %s", metrics.summary(metrics.snapshot(self)))
            self._write_metrics_file()
        self._close_rules_and_filters()

    def _close_outputs(self) -> None:
        """Close (drain) every output at the same time: the stop takes the longest drain, not their sum."""
        def close(out: Output) -> None:
            try:
                out.flush()
                out.close()
            except Exception:  # noqa: BLE001
                log.exception("%s: error while closing", out.describe())

        threads = [threading.Thread(target=close, args=(out,), name=f"close-{out.name}") for out in self.outputs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _write_metrics_file(self) -> None:
        try:
            metrics.write(metrics.snapshot(self), os.path.join(self.config.data_dir, "metrics.json"))
        except OSError as exc:
            log.debug("metrics file not written: %s", exc)

    def _stop_overdue(self) -> None:
        log.error("stop took longer than stop_timeout (%g s): exiting now; what is not delivered stays in the "
                  "spool for the next start", self.config.stop_timeout)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(1)

    # ---- all of it ------------------------------------------------------------------------------------------------

    def run(self, on_started=None) -> int:
        """Start, loop until stopped or the input ends, shut down. Returns the exit status.
        `on_started(error_text_or_None)` is called once the start succeeded or failed (daemon mode reports it)."""
        self.install_signals()
        try:
            apply_memory_limit(self.config.memory_limit)
            apply_priority_boost(self.config.priority_boost)
            try:
                self.start()
            except StartError as exc:
                log.error("%s", exc)
                if on_started:
                    on_started(str(exc))
                return 1
            if on_started:
                on_started(None)
            notify("READY=1", f"STATUS=collecting from {self.collector.describe()} to {len(self.outputs)} output(s)")
            code = 0
            try:
                self.loop()
            except Exception:  # noqa: BLE001
                log.exception("agent stopped by an error")
                code = 1
            finally:
                notify("STOPPING=1", "STATUS=stopping: draining the outputs")
                if self._stop_signal and self._stop_signal > 0:
                    log.info("stopping (%s)", signal.Signals(self._stop_signal).name)
                guard = threading.Timer(self.config.stop_timeout, self._stop_overdue)
                guard.daemon = True
                guard.start()
                try:
                    self.shutdown()
                finally:
                    guard.cancel()
            return code
        finally:
            self.restore_signals()


def apply_memory_limit(limit: int | None) -> None:
    """`memory_limit`: the agent's RLIMIT_DATA (heap and other private writable memory; a MemoryError beyond it
    ends the agent, what was spooled survives). Under systemd the unit's MemoryMax= is the cap instead."""
    if not limit:
        return
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY and hard < limit:
            hard = limit  # root may raise it
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ValueError, OSError) as exc:
        log.warning("memory_limit %d not applied: %s", limit, exc)
        return
    log.info("memory limit: %d MiB of data (RLIMIT_DATA)", limit // (1024 * 1024))


def apply_priority_boost(boost: int) -> None:
    """`priority_boost`: run at nice -boost (or lower, if started so), as auditd does with its default of 4. A
    reader that waits behind the workload for the CPU slows the audited programs down (docs/performance.md, exec
    storm beside busy loops). Under systemd the unit's Nice=-4 does it (no CAP_SYS_NICE needed then)."""
    if not boost:
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current > -boost:
            os.setpriority(os.PRIO_PROCESS, 0, -boost)
            log.info("priority: nice %d (priority_boost %d)", -boost, boost)
    except OSError as exc:
        log.warning("priority_boost %d not applied: %s", boost, exc)


def apply_input_override(config: Config, override: dict) -> None:
    """`auoms-py run --input TYPE[:PATH]`: replace the configured input (kept through reloads)."""
    from auoms_py.service.config import InputConfig

    if config.input.type != override["type"] or override.get("path"):
        config.input = InputConfig(type=override["type"], path=override.get("path"))


def set_log_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper()))
