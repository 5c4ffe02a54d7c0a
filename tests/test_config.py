"""Settings: precedence, variable names, refusals and redaction (library and `eta config show`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eta_cli import config
from eta_cli.cli import build_app, main
from eta_cli.config import ConfigError, Settings, load_settings


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile folder with a `team` profile; ETA_CONFIG_DIR points at it."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "team.toml").write_text(
        "[eta]\n"
        'model_name = "from-profile"\n'
        'experiment_name = "from-profile"\n'
        "max_duration_s = 5000\n"
        "serve_port = 1111\n"
        'data_uri = "s3://team-bucket/eta/data"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("ETA_CONFIG_DIR", str(directory))
    return directory


def test_defaults_without_any_profile_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ETA_CONFIG_DIR", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={}, config_dir=tmp_path / "empty")
    assert settings.profile == "local"
    assert settings.max_duration_s == Settings().max_duration_s == 14_400
    assert settings.min_duration_s == 300
    assert settings.sources["max_duration_s"] == "default"
    home = settings.home_path
    assert settings.effective_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.effective_data_uri == str(home / "data")
    assert settings.effective_database_url == f"sqlite:///{home / 'monitoring.db'}"


def test_precedence_defaults_profile_environment_options(profiles):
    environ = {"ETA_PROFILE": "team", "ETA_MODEL_NAME": "from-env", "ETA_MAX_DURATION_S": "6000"}
    settings = load_settings(overrides={"model_name": "from-option"}, environ=environ)
    assert settings.profile == "team"
    # option > environment > profile > default, one setting at each level
    assert settings.model_name == "from-option"
    assert settings.sources["model_name"] == "option"
    assert settings.max_duration_s == 6000
    assert settings.sources["max_duration_s"] == "$ETA_MAX_DURATION_S"
    assert settings.serve_port == 1111
    assert settings.sources["serve_port"] == f"profile {profiles / 'team.toml'}"
    assert settings.quoted_quantile == 0.7
    assert settings.sources["quoted_quantile"] == "default"
    assert settings.effective_data_uri == "s3://team-bucket/eta/data"
    # An explicit profile argument beats ETA_PROFILE.
    assert load_settings(profile="local", environ=environ).serve_port == 9696


def test_profile_chosen_by_environment_and_by_cli_option(profiles, monkeypatch):
    monkeypatch.setenv("ETA_PROFILE", "team")
    assert load_settings().model_name == "from-profile"
    runner = CliRunner()
    result = runner.invoke(build_app(), ["--profile", "team", "config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["model_name"] == {
        "value": "from-profile",
        "source": f"profile {profiles / 'team.toml'}",
    }
    monkeypatch.setenv("ETA_MODEL_NAME", "from-env")
    shown = json.loads(runner.invoke(build_app(), ["config", "show", "--json"]).stdout)
    assert shown["model_name"] == {"value": "from-env", "source": "$ETA_MODEL_NAME"}
    result = runner.invoke(build_app(), ["--home", "/srv/eta", "config", "show", "--json"])
    shown = json.loads(result.stdout)
    assert shown["home"] == {"value": "/srv/eta", "source": "option"}
    assert shown["data_uri"]["value"] == "s3://team-bucket/eta/data"


@pytest.mark.parametrize(
    ("variable", "setting", "value", "expected"),
    [
        ("MLFLOW_TRACKING_URI", "tracking_uri", "http://mlflow:5000", "http://mlflow:5000"),
        ("MLFLOW_REGISTRY_URI", "registry_uri", "http://registry:5000", "http://registry:5000"),
        ("AWS_ENDPOINT_URL_S3", "s3_endpoint_url", "http://minio:9000", "http://minio:9000"),
        ("AWS_ENDPOINT_URL", "s3_endpoint_url", "http://any:9000", "http://any:9000"),
        ("AWS_REGION", "aws_region", "eu-west-1", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "aws_region", "eu-west-2", "eu-west-2"),
        ("AWS_PROFILE", "aws_profile", "dev", "dev"),
        ("ETA_HOME", "home", "/srv/eta", Path("/srv/eta")),
        ("ETA_S3_BUCKET", "s3_bucket", "eta-bucket", "eta-bucket"),
        ("ETA_DATA_URI", "data_uri", "s3://b/eta/data", "s3://b/eta/data"),
        ("ETA_DATABASE_URL", "database_url", "sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
        ("ETA_MODEL_NAME", "model_name", "eta-x", "eta-x"),
        ("ETA_INGEST_CHUNK_ROWS", "ingest_chunk_rows", "1000", 1000),
        ("ETA_QUOTED_QUANTILE", "quoted_quantile", "0.8", 0.8),
        ("MLFLOW_EXPERIMENT_NAME", "experiment_name", "exp", "exp"),
    ],
)
def test_environment_variable_names(variable, setting, value, expected):
    settings = load_settings(environ={variable: value})
    assert getattr(settings, setting) == expected
    assert settings.sources[setting] == f"${variable}"


def test_specific_variables_win_over_generic_ones():
    settings = load_settings(
        environ={
            "AWS_ENDPOINT_URL_S3": "http://s3-only:9000",
            "AWS_ENDPOINT_URL": "http://all:9000",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "us-west-2",
            "ETA_EXPERIMENT_NAME": "eta-exp",
            "MLFLOW_EXPERIMENT_NAME": "mlflow-exp",
        }
    )
    assert settings.s3_endpoint_url == "http://s3-only:9000"
    assert settings.aws_region == "eu-west-1"
    assert settings.experiment_name == "eta-exp"


def test_every_setting_has_a_variable_and_names_follow_the_convention():
    names = {f for f in Settings.__dataclass_fields__ if f != "sources"}
    assert set(config.ENV_VARS) == names
    standard = {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
    }
    for variables in config.ENV_VARS.values():
        for variable in variables:
            assert variable.startswith("ETA_") or variable in standard, variable
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for variables in config.ENV_VARS.values():
        for variable in variables:
            assert f"\n{variable}=" in example, f"{variable} missing from .env.example"


@pytest.mark.parametrize("setting", ["tracking_uri", "database_url"])
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgresql_urls_are_refused(setting, scheme):
    with pytest.raises(ConfigError, match=r"postgresql\+psycopg2://") as raised:
        load_settings(overrides={setting: f"{scheme}://eta:pw@db:5432/eta"})
    assert setting in str(raised.value)
    ok = load_settings(overrides={setting: "postgresql+psycopg2://eta:pw@db:5432/eta"})
    assert getattr(ok, setting).startswith("postgresql+psycopg2://")


def test_bad_values_name_the_setting_and_where_it_came_from(profiles):
    with pytest.raises(ConfigError, match=r"serve_port = 'abc' \(from \$ETA_SERVE_PORT\)"):
        load_settings(environ={"ETA_SERVE_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"quantile_low must be between 0 and 0\.5"):
        load_settings(overrides={"quantile_low": 0.7})
    with pytest.raises(ConfigError, match="min_duration_s must be >= 0 and below max"):
        load_settings(environ={"ETA_MIN_DURATION_S": "20000"})
    (profiles / "typo.toml").write_text("[eta]\nmodel_nmae = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) model_nmae; allowed: "):
        load_settings(profile="typo")
    (profiles / "broken.toml").write_text("[eta\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(profile="broken")


def test_unknown_profile_is_a_clear_error(profiles, capsys):
    exists = r"profile 'nope' not found: the profiles that exist are .*local.* \(no nope.toml in "
    with pytest.raises(ConfigError, match=exists):
        load_settings(profile="nope")
    with pytest.raises(ConfigError, match="not valid"):
        load_settings(profile="../etc/passwd")
    with pytest.raises(SystemExit) as exited:
        main(["--profile", "nope", "config", "show"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: profile 'nope' not found")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_refused_postgresql_url_from_environment_exits_non_zero(monkeypatch, capsys):
    monkeypatch.setenv("ETA_DATABASE_URL", "postgresql://eta:hunter2@db/eta")
    with pytest.raises(SystemExit) as exited:
        main(["config", "show"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "use postgresql+psycopg2://" in err and "Traceback" not in err


def test_redaction_helpers():
    assert config.redact_url("postgresql+psycopg2://eta:s3cret@db:5432/eta") == (
        "postgresql+psycopg2://eta:***@db:5432/eta"
    )
    assert config.redact_url("http://mlflow:5000") == "http://mlflow:5000"
    assert config.redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert config.redact("alert_webhook", "https://hooks.slack.com/services/T/B/XYZ") == "***"
    assert config.redact("alert_webhook", "") == ""
    assert config.redact("model_name", "eta") == "eta"


SECRETS = {
    "ETA_DATABASE_URL": ("postgresql+psycopg2://eta:s3cr3tpw@db:5432/eta", "s3cr3tpw"),
    "MLFLOW_TRACKING_URI": ("http://admin:tr4ckpw@mlflow:5000", "tr4ckpw"),
    "ETA_ALERT_WEBHOOK": ("https://hooks.slack.com/services/T00/B00/w3bh00k", "w3bh00k"),
}


def test_config_show_redacts_secrets_in_table_and_json(monkeypatch):
    for variable, (value, _) in SECRETS.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()

    table = runner.invoke(build_app(), ["config", "show"])
    assert table.exit_code == 0, table.output
    for _, secret in SECRETS.values():
        assert secret not in table.output
    assert "postgresql+psycopg2://eta:***@db:5432/eta" in table.output
    assert "http://admin:***@mlflow:5000" in table.output
    assert "$ETA_DATABASE_URL" in table.output

    shown = runner.invoke(build_app(), ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    for _, secret in SECRETS.values():
        assert secret not in shown.stdout
    payload = json.loads(shown.stdout)
    assert payload["database_url"] == {
        "value": "postgresql+psycopg2://eta:***@db:5432/eta",
        "source": "$ETA_DATABASE_URL",
    }
    assert payload["tracking_uri"]["value"] == "http://admin:***@mlflow:5000"
    assert payload["alert_webhook"] == {"value": "***", "source": "$ETA_ALERT_WEBHOOK"}
    assert payload["registry_uri"]["value"] == "http://admin:***@mlflow:5000"


def test_replace_records_the_caller_as_source():
    settings = load_settings(environ={}).replace(max_duration_s=9000)
    assert settings.max_duration_s == 9000
    assert settings.sources["max_duration_s"] == "option"
