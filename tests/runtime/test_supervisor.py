"""A multi-process command's supervisor: it passes the child's output on as it comes, keeps back the
runtime's log and crash lines, and names the lost process (end to end: test_multiprocess.py)."""

import os
import threading

from jaxrec.config import Config
from jaxrec.runtime import supervisor

LOG = "08:31:24 process 0/2 epoch 2/40: train loss 2.1705\n"
# The runtime's account of a peer that stopped sending heartbeats: a log message over three lines.
RUNTIME_ERROR = ("E1206 08:31:33.437402    6551 coordination_service.cc:1549] [57] Use error polling to propagate the "
                 "following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending "
                 "heartbeats):\n1\nThe tasks have crashed.\n")
CRASH = ("F1206 08:31:33.438021    6562 client.h:80] Terminating process because the JAX distributed service detected "
         "fatal errors.\n*** Check failure stack trace: ***\n    @     0x7f874f020634  absl::LogMessage::SendToLog()\n"
         "Fatal Python error: Aborted\n")


def relayed(capsys, *writes: str) -> tuple[str, str]:
    """What relay() passes on to stderr and what it keeps back, for the child's stderr written in `writes`."""
    read, write = os.pipe()

    def child() -> None:
        for text in writes:
            os.write(write, text.encode())
        os.close(write)

    writer = threading.Thread(target=child)
    writer.start()
    with os.fdopen(read) as stream:
        held = supervisor.relay(stream)
    writer.join()
    return capsys.readouterr().err, "".join(held)


def test_runtime_log_lines_wait_for_the_next_log_line_and_a_crash_is_kept_back(capsys):
    passed, held = relayed(capsys, LOG, RUNTIME_ERROR, LOG, RUNTIME_ERROR, CRASH)
    assert passed == LOG + RUNTIME_ERROR + LOG  # in order, the first runtime message once the run went on
    assert held == RUNTIME_ERROR + CRASH


def test_progress_bars_pass_at_once(capsys):
    bar = "\r epoch 1:  50%|#####     | 6/12"
    passed, held = relayed(capsys, LOG, bar + "\r", "done\n")
    assert passed.startswith(LOG + bar + "\r") and held == ""


def test_the_lost_process_is_named_from_the_runtime_or_the_layout():
    two = Config(process_id=0, num_processes=2)
    assert supervisor.lost_peer_line(two, RUNTIME_ERROR + CRASH).startswith(
        "error: process 0 lost contact with process 1 (its heartbeats stopped")
    gloo = "terminate called after throwing an instance of 'gloo::EnforceNotMet'\n"
    assert "lost contact with process 1 (a collective's connection broke" in supervisor.lost_peer_line(two, gloo)
    many = Config(process_id=2, num_processes=4)
    assert "lost contact with another process" in supervisor.lost_peer_line(many, gloo)
    coordinator = ("Additional GRPC error information from remote target coordination_service while calling "
                   "/xla.coordination.CoordinationService/PollForError:\n:UNKNOWN:Error received from peer "
                   "{grpc_message:\"Socket closed\", grpc_status:14}\n")
    assert "lost contact with process 0, which hosts the run's coordinator" in supervisor.lost_peer_line(
        Config(process_id=1, num_processes=3), coordinator)


def test_the_runtimes_report_is_kept_in_a_file_the_line_names():
    config = Config(process_id=1, num_processes=2)
    report = supervisor.keep_report(config, RUNTIME_ERROR + CRASH)
    try:
        assert report.read_text() == RUNTIME_ERROR + CRASH and report.name.startswith("jaxrec-process-1-")
        line = supervisor.lost_peer_line(config, RUNTIME_ERROR + CRASH, report)
        assert f"(the runtime's report: {report}). Rerun every process" in line and "\n" not in line
    finally:
        report.unlink()


def test_only_a_command_line_process_that_joins_others_is_supervised():
    joined = Config(coordinator_address="localhost:1234", num_processes=2, process_id=0)
    assert supervisor.needed(joined, environ={})
    assert not supervisor.needed(joined, environ={supervisor.LIFELINE: "5"})  # the supervised child itself
    assert not supervisor.needed(Config(), environ={})
