"""Certificates for TLS tests, made with openssl as an operator would: a CA, a server certificate for 127.0.0.1
(subjectAltName IP and localhost), a client certificate; and a second CA that signed none of them."""
from __future__ import annotations

import subprocess


def make_certs(directory) -> dict:
    """Paths: ca, server (+ server_key), client (+ client_key), other-ca."""
    d = str(directory)
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=agent", "-keyout", "client.key",
        "-out", "client.csr")
    run("openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "client.pem")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
        "-keyout", "other-ca.key", "-out", "other-ca.pem")
    return {name: str(directory / f"{name}.pem") for name in ("ca", "server", "client", "other-ca")} | {
        "server_key": str(directory / "server.key"), "client_key": str(directory / "client.key")}
