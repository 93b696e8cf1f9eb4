"""`gemfinder serve` refuses a taken gRPC or metrics port and an unusable database in one line.

gRPC turns SO_REUSEPORT on by default on Linux, so a second server on the same port would start
and take half of the connections (with its own database); the server turns it off and names
the address instead. A database path that cannot hold a database is refused the same way, and
the file is left untouched.
"""

from __future__ import annotations

import socket

import pytest
from gemfinder.cli import main
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.server.app import Server
from gemfinder.store import Store


def config(tmp_path, **kw) -> ServerConfig:
    return ServerConfig(**{"address": "127.0.0.1:0", "metrics_port": 0} | kw)


async def second_server_on_the_same_port(tmp_path) -> tuple[int, UserError]:
    """Start a server, then another on its port; the port and the second one's error."""
    first = Server(config(tmp_path, db=str(tmp_path / "a.db")), oracle=InferenceOracle())
    port = await first.start()
    try:
        second = Server(
            config(tmp_path, address=f"127.0.0.1:{port}", db=str(tmp_path / "b.db")),
            oracle=InferenceOracle(),
        )
        with pytest.raises(UserError) as err:
            await second.start()
    finally:
        await first.stop(0)
    return port, err.value


async def test_a_grpc_port_in_use_is_refused(tmp_path):
    port, err = await second_server_on_the_same_port(tmp_path)
    assert err.field == "--address" and f"127.0.0.1:{port}" in str(err)


async def test_reuseport_is_off_even_past_the_precheck(tmp_path, monkeypatch):
    """The bind itself refuses the port (the pre-check only makes the message clear)."""
    from gemfinder.server import app

    monkeypatch.setattr(app, "_check_free", lambda *args: None)
    port, err = await second_server_on_the_same_port(tmp_path)
    assert f"127.0.0.1:{port}" in str(err)


async def test_a_metrics_port_in_use_is_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = Server(
            config(tmp_path, metrics_port=busy, db=str(tmp_path / "m.db")),
            oracle=InferenceOracle(),
        )
        with pytest.raises(UserError) as err:
            await server.start()
    assert err.value.field == "--metrics-port" and str(busy) in str(err.value)


def test_serve_ports_in_use_exit_2_in_one_line(tmp_path, capfd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        db = str(tmp_path / "s.db")
        argv = ["serve", "--address", f"127.0.0.1:{busy}", "--metrics-port", "0", "--db", db]
        assert main(argv) == 2
        err = capfd.readouterr().err.strip()
        assert err.splitlines() == [
            f"gemfinder serve: error: --address: 127.0.0.1:{busy} is already in use "
            "(another gemfinder serve?)"
        ], err
        argv = ["serve", "--address", "127.0.0.1:0", "--metrics-port", str(busy), "--db", db]
        assert main(argv) == 2
        err = capfd.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--metrics-port: cannot serve metrics on" in err
        assert "already in use" in err and "Traceback" not in err, err


@pytest.mark.parametrize("kind", ["missing_dir", "directory", "not_sqlite"])
def test_unusable_database_paths_are_one_line_errors(tmp_path, capsys, kind):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not a database")
    path = {
        "missing_dir": tmp_path / "nonexist" / "x.db",
        "directory": tmp_path,
        "not_sqlite": garbage,
    }[kind]
    with pytest.raises(UserError) as err:
        Store(path, option="--store")
    assert err.value.field == "--store" and str(path) in str(err.value)
    assert garbage.read_bytes() == b"PK\x03\x04 not a database"  # left untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.npz"]
    argv = ["serve", "--address", "127.0.0.1:0", "--metrics-port", "0", "--db", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemfinder serve: error: --db: ") and len(err.splitlines()) == 1, err


def test_an_empty_file_is_an_empty_database(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    Store(path).close()
    assert path.read_bytes().startswith(b"SQLite format 3\x00")
