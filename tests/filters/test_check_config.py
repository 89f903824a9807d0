"""`auoms-py ctl check-config`: validates the configuration and its filter file, says what each filter does."""
import subprocess
import sys

from tests.paths import REPO


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auoms_py", "ctl", "check-config", *args], capture_output=True,
                          text=True, cwd=REPO)


def test_the_shipped_configuration_and_its_filters():
    run = check("conf/auoms.yaml")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("conf/auoms.yaml: OK (input netlink")
    assert "dpkg (line " in out and "drops connect, fchown, openat, unlink of processes whose exe is '/usr/bin/dpkg'" \
        in out and "(and all their descendants)" in out
    assert "systemd-resolved (line " in out and "(the process only, not its children)" in out


def test_a_filter_file_alone_with_problems_and_warnings(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text("process_filters:\n  - name: a\n    exe: /bin/a\n    syscalls: [\"!connect\"]\n"
                    "  - {name: ghost, user: nosuchuser, exe: /bin/b}\n"
                    "outputs:\n  nosuchoutput: {drop_fields: [a0]}\n")
    run = check(str(path))
    assert run.returncode == 0, run.stderr
    assert "a (line 2): drops every syscall except connect of processes whose exe is '/bin/a'" in run.stdout
    assert f"warning: {path}:5: filter 'ghost' disabled: unknown user 'nosuchuser'" in run.stdout
    path.write_text("process_filters:\n  - name: a\n    exe: {prefix: /opt/, glob: /x}\n")
    run = check(str(path))
    assert run.returncode == 1
    assert f"{path}:3: filter 'a': exe: give exactly one of equals, prefix, contains, regex, glob" in run.stderr


def test_filter_sections_for_outputs_the_config_does_not_have(tmp_path):
    filters = tmp_path / "filters.yaml"
    filters.write_text("outputs:\n  syslog: {drop_record_types: [SERVICE_START]}\n")
    config = tmp_path / "auoms.yaml"
    config.write_text(f"input: netlink\nfilters: {filters}\noutputs: [{{name: terminal, type: stdout}}]\n")
    run = check(str(config))
    assert run.returncode == 0, run.stderr
    assert f"{filters}:2: outputs: 'syslog' is not an output of the configuration (terminal)" in run.stdout
    config.write_text("input: netlink\noutputs: []\n")
    run = check(str(config))
    assert run.returncode == 1 and "outputs" in run.stderr
