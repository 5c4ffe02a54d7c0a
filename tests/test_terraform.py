"""Terraform checked here: init, validate and the offline plan tests of infra/terraform.

The module is copied to a temporary folder first, so that ``.terraform/`` and the lock
file never land in the repository. The AWS provider comes from a local plugin
directory (``terraform init -plugin-dir``) and the tests in
``infra/terraform/tests/`` mock it: nothing here talks to the network or to AWS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "infra" / "terraform"
PLUGIN_DIR = Path(os.environ.get("ETA_TEST_TF_PLUGIN_DIR", "/opt/tf-plugins"))
TERRAFORM = shutil.which("terraform") or "/usr/local/bin/terraform"


def _provider_on_disk() -> bool:
    """True when the plugin directory holds a hashicorp/aws provider build, unpacked
    (``<version>/<os_arch>/terraform-provider-aws*``) or packed as ``terraform
    providers mirror`` writes it (``terraform-provider-aws_<version>_<os_arch>.zip``)."""
    aws = PLUGIN_DIR / "registry.terraform.io" / "hashicorp" / "aws"
    return any(aws.glob("*/*/terraform-provider-aws*")) or any(
        aws.glob("terraform-provider-aws_*.zip")
    )


pytestmark = [
    pytest.mark.skipif(
        not Path(TERRAFORM).exists(), reason=f"terraform is not installed ({TERRAFORM})"
    ),
    pytest.mark.skipif(
        not _provider_on_disk(),
        reason=f"no hashicorp/aws provider under {PLUGIN_DIR} (terraform init -plugin-dir)",
    ),
]


def _terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run terraform offline in ``workdir`` (no CLI config, no checkpoint call home)."""
    cli_config = workdir / "terraformrc"
    cli_config.touch()
    env = dict(
        os.environ,
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        TF_CLI_CONFIG_FILE=str(cli_config),
        TF_DATA_DIR=str(workdir / ".terraform"),
    )
    return subprocess.run(
        [TERRAFORM, *args, "-no-color"],
        cwd=workdir / "module",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the module, initialised against the local provider only."""
    workdir = tmp_path_factory.mktemp("terraform")
    shutil.copytree(
        MODULE,
        workdir / "module",
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "terraform.tfvars"),
    )
    init = _terraform(workdir, "init", "-backend=false", f"-plugin-dir={PLUGIN_DIR}")
    assert init.returncode == 0, init.stdout + init.stderr
    return workdir


def test_the_module_initialises_from_the_local_provider_and_validates(initialised: Path) -> None:
    result = _terraform(initialised, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The configuration is valid" in result.stdout


def test_the_offline_plan_tests_pass(initialised: Path) -> None:
    result = _terraform(initialised, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout, result.stdout
    for run in (
        "defaults_plan",
        "refuses_admin_ports_open_to_the_world",
        "service_cidrs_must_be_chosen",
    ):
        assert f'run "{run}"... pass' in result.stdout, result.stdout


def test_terraform_works_on_a_copy_outside_the_repository(initialised: Path) -> None:
    assert not initialised.resolve().is_relative_to(ROOT)
    assert (initialised / ".terraform" / "providers").is_dir()
