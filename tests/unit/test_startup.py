"""The process's settings are made by one explicit call of each entry point, never as a side effect of importing
the library; an operator's own values win. Each case runs in a new interpreter, where nothing has set them yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gen_platform.startup import MLFLOW_DEFAULTS, RAY_DEFAULTS

OURS = {*RAY_DEFAULTS, *MLFLOW_DEFAULTS}


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=180)


def test_importing_every_library_module_changes_no_environment_variable():
    # Ray's own import sets a variable of its own (RAY_CLIENT_MODE): the libraries are imported first, so that
    # only what the platform's modules do is compared.
    result = _run("import importlib, os, pkgutil, gen_platform, mlflow, ray, ray.train, ray.tune, torch\n"
                  "before = dict(os.environ)\n"
                  "names = [m.name for m in pkgutil.walk_packages(gen_platform.__path__, 'gen_platform.')]\n"
                  "for name in names:\n"
                  "    importlib.import_module(name)\n"
                  "changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))\n"
                  "print(len(names), changed)")
    assert result.returncode == 0, result.stderr
    count, changed = result.stdout.split(maxsplit=1)
    assert int(count) > 40  # every module was imported, Ray's, MLflow's and torch's users among them
    assert changed.strip() == "[]"


def test_the_cli_configures_its_process_before_running_a_command():
    result = _run("import json, os, sys\n"
                  "sys.argv = ['genp', '--help']\n"
                  "from gen_platform import cli\n"
                  "try:\n"
                  "    cli.main()\n"
                  "except SystemExit:\n"
                  "    print(json.dumps([os.environ.get(k) for k in ('RAY_DEDUP_LOGS_SKIP_REGEX',"
                  " 'MLFLOW_HTTP_REQUEST_MAX_RETRIES', 'MLFLOW_HTTP_REQUEST_TIMEOUT')]))",
                  MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    skip, retries, timeout = json.loads(result.stdout.strip().splitlines()[-1])
    assert skip == RAY_DEFAULTS["RAY_DEDUP_LOGS_SKIP_REGEX"]
    assert retries == MLFLOW_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert timeout == "5"  # the operator's value


def test_the_flows_add_their_prefect_defaults_to_the_same_call():
    result = _run("import os, flows\nprint(os.environ['RAY_USAGE_STATS_ENABLED'], "
                  "os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'])", PREFECT_SERVER_ANALYTICS_ENABLED="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "true"]


def test_a_call_after_ray_was_imported_names_the_settings_ray_read_without():
    result = _run("import ray\nfrom gen_platform.startup import configure_process\nconfigure_process()",
                  RAY_DEDUP_LOGS="1")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gen_platform.startup.StartupOrderError: configure_process() must run before Ray")
    assert "RAY_DEDUP_LOGS_SKIP_REGEX" in last and "RAY_DEDUP_LOGS," not in last  # the one set in time is not named
