"""Nothing reaches the network at run time: the course runs with outbound connections blocked.

A ``sitecustomize.py`` written to a temporary folder and put on ``PYTHONPATH`` is imported
by every Python process started with that environment, here the notebook kernels. It
wraps ``socket.socket.connect`` / ``connect_ex`` / ``sendto`` and the name lookups so that
anything but a loopback address is refused *before* a packet is sent (and a host name
other than localhost is not even looked up), and it records every refused attempt.

``test_guard_refuses_...`` proves the guard works without sending anything: the real
connect functions are swapped for recorders first, so even a broken guard could not
reach the network. The notebook tests then execute 00 and 01, and every other notebook
whose stored run time is at most COURSE_OFFLINE_BUDGET seconds (default 20; nbval runs
them all anyway), under the guard, and assert they pass and never even tried.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import stored_seconds

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
BUDGET = float(os.environ.get("COURSE_OFFLINE_BUDGET", "20"))
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy"}

GUARD = '''\
"""Written by tests/test_offline.py: refuse every connection that would leave this machine."""
import ipaddress
import socket

BLOCKED = []  # every refused attempt, for the test to read
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex
_LOCAL_NAMES = {None, "", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlocked(ConnectionRefusedError):
    """Raised instead of sending anything to a non-loopback address."""


def _is_local(host):
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what, host):
    BLOCKED.append(f"{what} {host!r}")
    raise NetworkBlocked(f"offline: {what} to {host!r} refused (tests/test_offline.py)")


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        _refuse("connect", address[0])


def connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        _refuse("sendto", address[0])
    return _real_sendto(self, data, *args)


def _lookup(real, what):
    def lookup(host, *args, **kwargs):
        if not _is_local(host):
            BLOCKED.append(f"{what} {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"offline: no lookup of {host!r}")
        return globals()[real](host, *args, **kwargs)
    return lookup


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.socket.sendto = sendto
socket.getaddrinfo = _lookup("_real_getaddrinfo", "getaddrinfo")
socket.gethostbyname = _lookup("_real_gethostbyname", "gethostbyname")
socket.gethostbyname_ex = _lookup("_real_gethostbyname_ex", "gethostbyname_ex")
socket.course_offline_guard = True
'''

# Run in a guarded interpreter: nothing may reach the real functions for a remote address.
PROBE = textwrap.dedent('''
    import json, socket, sys, urllib.request
    import sitecustomize as guard

    calls = []
    def recorder(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} reached the real function")
        return record
    # Only attempt anything when every entry point goes through the guard's wrappers, whose
    # way out (guard._real_*) is replaced by recorders: then nothing can leave the machine.
    installed = (socket.socket.connect is guard.connect and socket.socket.connect_ex is guard.connect_ex
                 and socket.socket.sendto is guard.sendto and socket.getaddrinfo.__module__ == "sitecustomize"
                 and socket.gethostbyname.__module__ == "sitecustomize")
    if not installed:
        print(json.dumps({"file": guard.__file__, "installed": False}))
        sys.exit(0)
    real = {n: getattr(guard, n) for n in dir(guard) if n.startswith("_real_")}
    for name in real:
        setattr(guard, name, recorder(name))

    refused = {}
    def attempt(label, fn):
        try:
            fn()
            refused[label] = "not refused"
        except (OSError, AssertionError) as exc:
            refused[label] = type(exc).__name__ if not isinstance(exc, AssertionError) else str(exc)
    s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Documentation-only addresses (RFC 5737 / RFC 3849) and a reserved name (RFC 2606).
    attempt("connect ipv4", lambda: s4.connect(("192.0.2.1", 80)))
    attempt("connect_ex ipv4", lambda: s4.connect_ex(("192.0.2.1", 80)))
    attempt("connect ipv6", lambda: s6.connect(("2001:db8::1", 80, 0, 0)))
    attempt("sendto udp", lambda: udp.sendto(b"x", ("192.0.2.1", 53)))
    attempt("lookup", lambda: socket.getaddrinfo("example.invalid", 80))
    attempt("create_connection", lambda: socket.create_connection(("example.invalid", 80), timeout=1))
    attempt("urlopen", lambda: urllib.request.urlopen("http://example.invalid/", timeout=1))
    for s in (s4, s6, udp):
        s.close()

    for name, fn in real.items():  # loopback must still work, with the real functions back
        setattr(guard, name, fn)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(("localhost", server.getsockname()[1]), timeout=5)
    loopback_ok = client.getpeername()[0] == "127.0.0.1"
    client.close(); server.close()
    print(json.dumps({"file": guard.__file__, "installed": True, "calls": calls, "refused": refused,
                      "blocked": guard.BLOCKED, "loopback_ok": loopback_ok}))
''')


CHEAP = [p for p in NOTEBOOKS if p.name[:2] in ("00", "01") or stored_seconds(nbformat.read(p, as_version=4).cells) <= BUDGET]


@pytest.fixture(scope="module")
def guard_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("offline")
    (folder / "sitecustomize.py").write_text(GUARD)
    # A proxy on localhost would carry traffic out past the guard: none for these runs.
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    return folder, env


def test_guard_refuses_remote_addresses_before_sending(guard_env):
    folder, env = guard_env
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                            timeout=60, cwd=folder.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).parent == folder, "the guard was not the sitecustomize imported"
    assert report["installed"], "the guard's wrappers are not installed on socket"
    print(f"\nrefused: {report['refused']}\nrecorded: {report['blocked']}")
    assert report["calls"] == [], f"a remote attempt reached a real socket function: {report['calls']}"
    assert all(v in ("NetworkBlocked", "gaierror", "URLError") for v in report["refused"].values()), report["refused"]
    assert len(report["blocked"]) >= len(report["refused"])
    assert report["loopback_ok"], "loopback connections must keep working (the kernel needs them)"


def test_guard_is_not_active_in_this_process():
    """The guard lives only in the children given its PYTHONPATH, never in pytest itself."""
    assert not getattr(socket, "course_offline_guard", False)


@pytest.mark.slow
@pytest.mark.parametrize("path", CHEAP, ids=lambda p: p.name)
def test_notebook_runs_offline(guard_env, path, monkeypatch):
    folder, env = guard_env
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # the kernel inherits it
    for name in list(os.environ):
        if name.lower() in PROXY_VARS:
            monkeypatch.delenv(name)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, socket, sitecustomize\n"
        "print(json.dumps({'guard': getattr(socket, 'course_offline_guard', False),"
        " 'file': sitecustomize.__file__, 'blocked': sitecustomize.BLOCKED}))"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    report = json.loads(nb.cells[-1].outputs[0]["text"].strip().splitlines()[-1])
    assert report["guard"] and Path(report["file"]).parent == folder, "the kernel ran without the guard"
    assert report["blocked"] == [], f"{path.name} tried to reach the network: {report['blocked']}"
