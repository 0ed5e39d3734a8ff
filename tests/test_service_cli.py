"""`sendcore token create/list/revoke`, the `[service]` settings table and the sample service configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sendcore.cli import main
from sendcore.errors import ConfigError
from sendcore.service.tokens import TokenStore
from sendcore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "sendcore.toml"
    config.write_text(f'[service]\ntokens_file = "{tmp_path / "tokens.json"}"\n')
    return config


def test_token_create_prints_the_token_once_and_stores_only_a_salted_hash(tmp_path):
    config = _config(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["token", "create", "--config", str(config), "--scope", "submit,read",
                                  "--name", "ci"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("sc_") and "it is shown only now" in result.stderr
    stored = (tmp_path / "tokens.json").read_text()
    secret = token.split("_", 2)[2]
    assert secret not in stored and token not in stored
    record = json.loads(stored)["tokens"][0]
    assert record["name"] == "ci" and record["scopes"] == ["submit", "read"] and len(record["salt"]) == 32
    other = runner.invoke(main, ["token", "create", "--config", str(config), "--scope", "read"]).stdout.strip()
    records = json.loads((tmp_path / "tokens.json").read_text())["tokens"]
    assert records[0]["salt"] != records[1]["salt"]  # a salt per token
    store = TokenStore(tmp_path / "tokens.json")
    assert store.verify(token).name == "ci" and store.verify(other).scopes == ["read"]
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    listed = runner.invoke(main, ["token", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "ci  submit,read" in listed.stdout and secret not in listed.stdout


def test_token_revoke_and_bad_scopes(tmp_path):
    config = _config(tmp_path)
    runner = CliRunner()
    token = runner.invoke(main, ["token", "create", "--config", str(config), "--scope", "admin",
                                 "--name", "ops"]).stdout.strip()
    bad = runner.invoke(main, ["token", "create", "--config", str(config), "--scope", "read,write"])
    assert bad.exit_code == 2 and "scope: expected some of submit, read, admin" in bad.output
    result = runner.invoke(main, ["token", "revoke", "--config", str(config), "ops"])
    assert result.exit_code == 0 and "revoked" in result.stdout
    assert TokenStore(tmp_path / "tokens.json").verify(token) is None
    assert "revoked" in runner.invoke(main, ["token", "list", "--config", str(config)]).stdout
    again = runner.invoke(main, ["token", "revoke", "--config", str(config), "ops"])
    assert again.exit_code == 1 and "no live token" in again.stderr


def test_the_service_table_has_defaults_and_unknown_or_bad_keys_are_errors():
    s = Settings.from_toml_bytes(b"")
    assert (s.service.host, s.service.port, s.service.require_tokens) == ("127.0.0.1", 8787, True)
    assert s.service.retry_after == 1.0 and s.service.shutdown_grace == 10.0
    with pytest.raises(ConfigError, match=r"service\.max_body_byte: unknown key \(did you mean 'max_body_bytes'\?\)"):
        Settings.from_toml_bytes(b"[service]\nmax_body_byte = 10\n")
    with pytest.raises(ConfigError, match=r"service\.port: must be an integer from 0 to 65535"):
        Settings.from_toml_bytes(b"[service]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"service\.public_url: expected an http\(s\) base URL"):
        Settings.from_toml_bytes(b'[service]\npublic_url = "hooks.example.com"\n')
    with pytest.raises(ConfigError, match=r"service\.shutdown_grace"):
        Settings.from_toml_bytes(b'[service]\nshutdown_grace = "soon"\n')


def test_the_sample_service_configuration_loads_and_passes_serve_check(monkeypatch, tmp_path):
    monkeypatch.delenv("SENDCORE_LOAD_ENTRYPOINTS", raising=False)
    monkeypatch.setenv("SENDCORE_PLUGINS", "sendcore")  # the bundled plugins, whatever else is installed
    sample = ROOT / "examples" / "service.toml"
    s = Settings.from_toml(sample)
    assert s.service.open_metrics and s.service.open_delivery_reports == ["twilio"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    result = CliRunner().invoke(main, ["serve", "--config", str(sample), "--check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: would listen on http://127.0.0.1:8787")

