"""`gemfinder serve` settings (config.py, cli/serve.py): a bad value, from a flag or from its
GEMFINDER_* variable, is one line naming that flag or variable; --log-level; quiet HTTP clients."""

from __future__ import annotations

import http.server
import logging
import os
import threading

import gemfinder.cli.serve as serve_cli
import pytest
from gemfinder import config as cfg
from gemfinder.cli import main
from gemfinder.errors import UserError

ARC = '{"id": "a", "task": "arc_challenge", "question": "q", "choices": ["x", "y"], "answer": "A"}'


@pytest.fixture()
def query_sets(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(ARC + "\n")
    return tmp_path


def _load(argv: list[str], environ: dict[str, str] | None = None) -> cfg.ServerConfig:
    import argparse

    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    return cfg.load(parser.parse_args(argv), environ or {})


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("request_timeout_s", "0", "must be > 0"),
        ("request_timeout_s", "-1", "must be > 0"),
        ("request_timeout_s", "nan", "must be a finite number"),
        ("grace_s", "inf", "must be a finite number"),
        ("endpoint_concurrency", "0", "must be >= 1"),
        ("default_queries_per_model", "0", "must be >= 1"),
        ("max_active_searches", "0", "must be >= 1"),
        ("max_candidates", "0", "must be >= 1"),
        ("max_answer_bytes", "0", "must be >= 1"),
        ("max_message_bytes", str(2**31), "gRPC's limit"),
        ("metrics_port", "70000", "port number"),
        ("log_level", "verbose", "must be one of DEBUG, INFO"),
        ("endpoint_concurrency", "two", "expected int"),
    ],
)
def test_bad_values_name_the_flag_or_the_variable(setting, value, reason):
    flag, env = cfg.flag_name(setting), cfg.env_name(setting)
    with pytest.raises(UserError) as err:
        _load([f"{flag}={value}"])
    assert err.value.field == flag and reason in err.value.reason
    with pytest.raises(UserError) as err:
        _load([], {env: value})
    assert err.value.field == env and reason in err.value.reason


def test_zero_stays_allowed_where_it_means_off():
    config = _load(["--metrics-port", "0", "--grace-s", "0"])
    assert config.metrics_port == 0 and config.grace_s == 0.0


def test_a_query_set_name_given_twice_is_refused(query_sets):
    value = f"arc={query_sets / 'a.jsonl'},arc={query_sets / 'b.jsonl'}"
    with pytest.raises(UserError) as err:
        _load(["--query-sets", value])
    assert err.value.field == "--query-sets"
    assert "'arc' is given twice" in err.value.reason
    with pytest.raises(UserError) as err:
        _load([], {"GEMFINDER_QUERY_SETS": value})
    assert err.value.field == "GEMFINDER_QUERY_SETS"


def test_query_set_paths_refuse_duplicates_for_the_server_too(query_sets):
    config = cfg.ServerConfig(query_sets="arc=a.jsonl, arc=b.jsonl")
    with pytest.raises(UserError, match="given twice"):
        config.query_set_paths()


def test_query_set_files_are_checked_at_load(query_sets):
    with pytest.raises(UserError) as err:
        _load(["--query-sets", f"arc={query_sets / 'missing.jsonl'}"])
    assert err.value.field == "--query-sets" and "no such file" in err.value.reason
    with pytest.raises(UserError) as err:
        _load(["--query-sets", f"arc={query_sets}"])
    assert "is a directory" in err.value.reason
    both = f"arc={query_sets / 'a.jsonl'},gsm={query_sets / 'b.jsonl'}"
    assert set(_load(["--query-sets", both]).query_set_paths()) == {"arc", "gsm"}


def test_tls_half_configured_names_the_given_flag():
    with pytest.raises(UserError) as err:
        _load(["--tls-cert", "c.pem"])
    assert err.value.field == "--tls-cert" and "--tls-key" in err.value.reason
    with pytest.raises(UserError) as err:
        _load([], {"GEMFINDER_TLS_KEY": "k.pem"})
    assert err.value.field == "GEMFINDER_TLS_KEY" and "--tls-cert" in err.value.reason


def test_a_flag_wins_over_its_variable():
    config = _load(["--log-level", "warning"], {"GEMFINDER_LOG_LEVEL": "bogus"})
    assert config.log_level == "WARNING"
    assert _load([]).log_level == "INFO"


def _must_not_start(config):
    raise AssertionError(f"the server started with {config}")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--request-timeout-s", "0"], "--request-timeout-s: must be > 0, got '0'"),
        (["--endpoint-concurrency", "0"], "--endpoint-concurrency: must be >= 1, got '0'"),
        (["--default-queries-per-model", "0"], "--default-queries-per-model: must be >= 1"),
        (["--log-level", "loud"], "--log-level: must be one of"),
    ],
)
def test_serve_exits_2_with_one_line(tmp_path, capsys, monkeypatch, argv, line):
    monkeypatch.setattr(serve_cli, "_run", _must_not_start)
    db = tmp_path / "never.db"
    assert main(["serve", "--address", "127.0.0.1:0", "--db", str(db), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gemfinder serve: error: {line}"), err
    assert not db.exists()  # refused before anything was created


def test_serve_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(serve_cli, "_run", _must_not_start)
    monkeypatch.setenv("GEMFINDER_ENDPOINT_CONCURRENCY", "0")
    assert main(["serve", "--address", "127.0.0.1:0", "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gemfinder serve: error: GEMFINDER_ENDPOINT_CONCURRENCY: must be >= 1, got '0'"


@pytest.fixture()
def restore_logging():
    names = ["", "httpx", "httpx2", "httpcore", "httpcore2", "huggingface_hub", "aiohttp.client"]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _request_logs(caplog) -> list[logging.LogRecord]:
    """Send one request with huggingface_hub's HTTP client; the records it logged."""
    httpx2 = pytest.importorskip("httpx2")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="gemfinder.test"):
            with httpx2.Client() as client:
                client.get(f"http://127.0.0.1:{server.server_address[1]}/")
        return [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    finally:
        server.shutdown()
        server.server_close()


def test_http_requests_are_not_logged_at_info(restore_logging, caplog):
    serve_cli.configure_logging("INFO")
    assert logging.getLogger().level == logging.INFO
    assert _request_logs(caplog) == []
    logging.getLogger("gemfinder.search.manager").info("search started")
    assert any(r.getMessage() == "search started" for r in caplog.records)


def test_http_requests_are_logged_at_debug(restore_logging, caplog):
    serve_cli.configure_logging("DEBUG")
    assert any("HTTP Request" in r.getMessage() for r in _request_logs(caplog))


def test_error_level_keeps_http_clients_at_error(restore_logging):
    serve_cli.configure_logging("ERROR")
    assert logging.getLogger("httpx2").getEffectiveLevel() == logging.ERROR


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://ops:hunter2@tgi:8080", "credentials in the URL are not allowed"),
        ("http://tgi:8080/?model=x", "a query or fragment is not allowed"),
        ("http://tgi_-:8080", "not a valid host"),
    ],
)
def test_an_endpoints_file_url_no_candidate_could_name_is_refused(tmp_path, url, reason):
    # The file's URLs were only checked for http(s)://: `serve --endpoints` started, and every
    # request naming that endpoint was then refused by the candidates' URL rules. (Checked by
    # the loader the server calls at start: a regression must not leave a server running.)
    from gemfinder.oracles import load_endpoint_configs

    endpoints = tmp_path / "e.json"
    endpoints.write_text(f'[{{"url": "{url}"}}]')
    with pytest.raises(UserError) as err:
        load_endpoint_configs(endpoints)
    assert err.value.field == "endpoints[0].url" and reason in err.value.reason
    assert "hunter2" not in str(err.value)


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles(
    tmp_path, monkeypatch, restore_logging, caplog
):
    """GEMFINDER_TOKENS would otherwise leave the server without authentication, silently."""
    started = []

    async def _started(config):
        started.append(config)
        return 0

    monkeypatch.setattr(serve_cli, "_run", _started)
    for name in [n for n in os.environ if n.startswith("GEMFINDER_")]:  # CI's own, if any
        monkeypatch.delenv(name)
    monkeypatch.setenv("GEMFINDER_TOKENS", "s3cret")
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(tmp_path))  # read by the lm-eval index
    monkeypatch.setenv("GEMFINDER_LEASE_SECONDS", "15")  # a setting
    with caplog.at_level(logging.WARNING):
        assert main(["serve", "--address", "127.0.0.1:0", "--db", str(tmp_path / "x.db")]) == 0
    assert started and started[0].token == ""
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "GEMFINDER_TOKENS is not a gemfinder setting; ignored (did you mean GEMFINDER_TOKEN?)"
    ]


def test_the_other_variables_are_read_where_the_list_says():
    from pathlib import Path

    package = Path(cfg.__file__).parent
    for name, where in cfg.OTHER_VARIABLES.items():
        assert name in (package / where).read_text(encoding="utf-8"), (name, where)
    root = Path(__file__).resolve().parents[2]  # the repository (the package may be installed)
    for name, where in cfg.SUITE_VARIABLES.items():
        assert name in (root / where).read_text(encoding="utf-8"), (name, where)


def test_the_suites_own_variables_are_not_warned_about(monkeypatch):
    """CI runs `serve` (tests/store/test_pg_store.py) with GEMFINDER_REQUIRE_POSTGRES=1 set."""
    env = {"GEMFINDER_REQUIRE_POSTGRES": "1", "GEMFINDER_SHARED_DATA": "/x", "GEMFINDER_TOKENS": ""}
    assert cfg.unknown_variables(env) == [
        "GEMFINDER_TOKENS is not a gemfinder setting; ignored (did you mean GEMFINDER_TOKEN?)"
    ]


def _documented_settings() -> dict[str, tuple[str, str]]:
    """docs/service.md's Configuration table: flag -> (variable, default as written)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "service.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(GEMFINDER_[A-Z_]+)` \| `([^`]*)` \|", text, re.M)
    return {flag: (var, default) for flag, var, default in rows}


def test_docs_table_lists_every_setting_with_its_variable_and_default():
    from dataclasses import fields

    rows = _documented_settings()
    expected = {
        cfg.flag_name(f.name): (cfg.env_name(f.name), repr(f.default))
        for f in fields(cfg.ServerConfig)
    }
    assert rows == expected


def _other_value(name: str, default, tmp_path):
    """A valid value unlike the default, as the text a flag or variable carries."""
    files = {"query_sets": "q.jsonl", "lm_eval_tasks": "tasks.json"}
    if name in files:
        path = tmp_path / files[name]
        path.write_text(ARC + "\n" if name == "query_sets" else "{}")
        return f"q={path}" if name == "query_sets" else str(path), None
    special = {
        "address": "0.0.0.0:50051",
        "allow_endpoint_patterns": "http://tgi-*.fleet.svc:8080",
        "allow_any_endpoint": "true",
        "lm_eval_include": str(tmp_path),
        "log_level": "DEBUG",
        "executor": "http://gemfinder-executor:8090",
    }
    if name in special:
        return special[name], None
    if isinstance(default, bool):
        return "true", True
    if isinstance(default, (int, float)):
        return str(default + 2), type(default)(default + 2)
    return f"{name}-value", None


@pytest.mark.parametrize("source", ["flag", "variable"])
def test_every_setting_takes_effect_from_its_flag_and_its_variable(tmp_path, source):
    """Each documented flag and variable changes the setting it names, and only that one."""
    import argparse
    from dataclasses import fields

    pairs = {"tls_cert": "tls_key", "tls_key": "tls_cert"}  # TLS needs both
    for f in fields(cfg.ServerConfig):
        raw, parsed = _other_value(f.name, f.default, tmp_path)
        given = {f.name: raw}
        if f.name in pairs:
            given[pairs[f.name]] = str(tmp_path / "other.pem")
        parser = argparse.ArgumentParser()
        cfg.add_arguments(parser)
        if source == "flag":
            argv = [x for k, v in given.items() for x in (cfg.flag_name(k), v)]
            if f.type == "bool":
                argv = [cfg.flag_name(f.name)]
            config = cfg.load(parser.parse_args(argv), {})
        else:
            environ = {cfg.env_name(k): v for k, v in given.items()}
            config = cfg.load(parser.parse_args([]), environ)
        value = getattr(config, f.name)
        assert value != f.default, f.name
        assert parsed is None or value == parsed, f.name
        changed = {
            g.name
            for g in fields(cfg.ServerConfig)
            if getattr(config, g.name) != g.default and g.name not in given
        }
        assert not changed, (f.name, changed)


def test_log_level_help_names_every_accepted_level():
    for level in cfg.LOG_LEVELS:
        assert level in cfg.HELP["log_level"], level


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("s3cret\n", "begins or ends with whitespace (a newline kept from a file?)"),
        (" s3cret", "begins or ends with whitespace"),
        ("s3\x00cret", "contains '\\x00'"),
        ("sécret", "contains 'é'"),
    ],
)
def test_a_token_no_client_could_send_is_refused_naming_the_variable(token, reason):
    """`kubectl create secret --from-file` keeps the newline: every call was UNAUTHENTICATED."""
    with pytest.raises(UserError) as err:
        _load([], {"GEMFINDER_TOKEN": token})
    assert str(err.value).startswith(f"GEMFINDER_TOKEN: {reason}"), str(err.value)
    assert _load([], {"GEMFINDER_TOKEN": "Zm9v-bar_baz.qux~ ok"}).token == "Zm9v-bar_baz.qux~ ok"
