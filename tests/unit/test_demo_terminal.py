"""The demo's terminal: log lines never glued to the live status line, and a busy port said out loud (a port
still in TIME_WAIT is not busy)."""

from __future__ import annotations

import io
import logging
import socket

from gateway.demo import StatusLine, _ClearsStatusLine, port_or_free


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_line_goes_on_a_line_of_its_own_above_the_status_line() -> None:
    screen = Terminal()
    status = StatusLine(screen)
    status.show("[ 5 s] 60 msg/s")
    handler = logging.StreamHandler(screen)
    handler.addFilter(_ClearsStatusLine(status))
    log = logging.getLogger("test.demo.terminal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("incident 1 on ac-01")
    finally:
        log.removeHandler(handler)
    status.say("SVC-000001: technician assigned")
    assert screen.getvalue() == ("\r\033[K[ 5 s] 60 msg/s" "\r\033[K" "incident 1 on ac-01\n"
                                 "\r\033[K" "SVC-000001: technician assigned\n" "[ 5 s] 60 msg/s")


def test_a_status_line_off_a_terminal_is_a_line_per_update() -> None:
    out = io.StringIO()
    status = StatusLine(out)
    status.show("one")
    status.say("message")
    status.show("two")
    assert out.getvalue() == "one\nmessage\ntwo\n"


def test_a_port_another_program_listens_on_is_replaced_with_a_warning() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        said = io.StringIO()
        chosen = port_or_free(busy, "web console", warn=said)
    assert chosen != busy and f"WARNING: port {busy} for the web console is in use" in said.getvalue()


def test_a_port_left_in_time_wait_is_used_as_asked() -> None:
    """The demo used to move to a random port when the one asked for still held a closed connection."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the connection stays in TIME_WAIT
    client.close()
    listener.close()
    said = io.StringIO()
    assert port_or_free(port, "web console", warn=said) == port and said.getvalue() == ""
