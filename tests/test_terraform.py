"""deploy/aws: the Terraform module is formatted and valid offline, wired right against a mocked
AWS, and its cloud-init user data runs provision.sh with each role's arguments, writing no secret
to any file on the way."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "deploy" / "aws"
TEMPLATES = MODULE / "templates"
# Where a machine keeps providers for offline use (`terraform init -plugin-dir`); the first that
# holds hashicorp/aws wins. TERRAFORM_PLUGIN_DIR names another.
PLUGIN_DIRS = ["/opt/tf-plugins", "~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
               "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins"]
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"

TOKEN = "w0rkertoken" * 4
PASSWORD = "rabb1tpassword" * 3
SRC = "/usr/local/src/sweeplab"


def plugin_dir() -> Path | None:
    candidates = [os.environ.get("TERRAFORM_PLUGIN_DIR"), *PLUGIN_DIRS]
    for candidate in filter(None, candidates):
        path = Path(candidate).expanduser()
        if any(path.glob(AWS_PROVIDER)):
            return path
    return None


def require(*, plugins: bool) -> Path | None:
    """The plugin directory (if asked for); in CI a missing tool fails, elsewhere it skips."""
    missing = []
    if shutil.which("terraform") is None:
        missing.append("terraform")
    found = plugin_dir() if plugins else None
    if plugins and found is None:
        missing.append("the hashicorp/aws provider in a plugin directory "
                       f"({', '.join(PLUGIN_DIRS)} or $TERRAFORM_PLUGIN_DIR)")
    if missing:
        message = f"missing: {'; '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def terraform_env(home: Path) -> dict[str, str]:
    """No inherited Terraform or AWS settings, no CLI config, and no network: a proxy that
    refuses every connection makes any attempt to reach a registry fail."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "AWS_")) and k.lower() not in ("http_proxy", "https_proxy",
                                                                       "no_proxy")}
    (home / "terraformrc").write_text("")
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1",
               TF_CLI_CONFIG_FILE=str(home / "terraformrc"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    return env


def terraform(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["terraform", *args, "-no-color"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"terraform {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def copy_module(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*", "*.tfvars*")
    shutil.copytree(MODULE, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def initialised(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    plugins = require(plugins=True)
    work = tmp_path_factory.mktemp("terraform")
    env = terraform_env(work)
    module = copy_module(work / "aws")
    terraform(module, env, "init", "-backend=false", f"-plugin-dir={plugins}", "-input=false")
    return module, env


def test_module_is_formatted(tmp_path):
    require(plugins=False)
    module = copy_module(tmp_path / "aws")
    terraform(module, terraform_env(tmp_path), "fmt", "-check", "-recursive", "-diff")


def test_module_validates_offline(initialised):
    module, env = initialised
    assert "The configuration is valid" in terraform(module, env, "validate")


# Run by `terraform test` in the module's copy: a mocked AWS answers, nothing is created.
WIRING_TEST = """
mock_provider "aws" {
  mock_data "aws_ami" {
    defaults = { id = "ami-0123456789abcdef0" }
  }
  mock_data "aws_vpc" {
    defaults = { id = "vpc-default" }
  }
  mock_data "aws_subnet" {
    defaults = { vpc_id = "vpc-given" }
  }
  mock_data "aws_ec2_instance_type_offerings" {
    defaults = {
      instance_types = ["t3.micro", "t3.micro", "t3.large"]
      locations      = ["eu-west-1a", "eu-west-1b", "eu-west-1b"]
    }
  }
  mock_data "aws_subnets" {
    defaults = { ids = ["subnet-b", "subnet-a"] }
  }
  mock_resource "aws_instance" {
    defaults = { private_ip = "10.0.1.5" }
  }
  mock_resource "aws_eip" {
    defaults = { public_ip = "198.51.100.7" }
  }
}

variables {
  region     = "eu-west-1"
  admin_cidr = "203.0.113.7/32"
  repo_url   = "https://example.com/it's/sweeplab.git"
  repo_ref   = "v1.2"
}

run "api_host_alone_trains_and_makes_its_own_secrets" {
  assert {
    condition     = output.api_url == "http://198.51.100.7:8080"
    error_message = "api_url: ${output.api_url}"
  }
  assert {
    condition = output.token_command == join(" ", [
      "ssh admin@198.51.100.7 \\"sudo cloud-init status --wait >/dev/null;",
      "sudo sed -n 's/^SWEEPLAB_API_TOKEN=//p' /etc/sweeplab/sweeplab.env\\"",
    ])
    error_message = "token_command: ${output.token_command}"
  }
  assert {
    condition = strcontains(local.api_user_data, join("\\n", [
      "git remote add origin 'https://example.com/it'\\\\''s/sweeplab.git'",
      "git fetch -q --depth 1 origin 'v1.2'",
      "git checkout -q FETCH_HEAD",
      "",
      "args=(--role 'all')",
      "scripts/provision.sh",
    ]))
    error_message = "the API host's user data: ${nonsensitive(local.api_user_data)}"
  }
  assert {
    condition     = length(aws_instance.worker) == 0 && local.worker_user_data == null
    error_message = "no training hosts"
  }
  assert {
    condition = alltrue([
      jsonencode(local.zones_offering_all_types) == jsonencode(["eu-west-1a", "eu-west-1b"]),
      local.subnet_id == "subnet-a",
      local.vpc_id == "vpc-default",
      aws_security_group.api.vpc_id == "vpc-default",
    ])
    error_message = "placement: ${local.subnet_id} in ${local.vpc_id}"
  }
  assert {
    condition = alltrue([
      aws_instance.api.instance_type == "t3.micro",
      aws_instance.api.ami == "ami-0123456789abcdef0",
      aws_instance.api.metadata_options[0].http_tokens == "required",
      aws_instance.api.root_block_device[0].encrypted,
    ])
    error_message = "the API host"
  }
  assert {
    condition = alltrue([
      for rule in [
        aws_vpc_security_group_ingress_rule.api_ssh_from_admin,
        aws_vpc_security_group_ingress_rule.api_http_from_admin[0],
        aws_vpc_security_group_ingress_rule.workers_ssh_from_admin,
      ] : rule.cidr_ipv4 == "203.0.113.7/32"
    ])
    error_message = "SSH and the API from admin_cidr"
  }
  assert {
    condition = (
      length(aws_vpc_security_group_ingress_rule.api_https_from_admin) == 0
      && length(aws_vpc_security_group_ingress_rule.api_acme_challenge) == 0
    )
    error_message = "no HTTPS without a domain"
  }
  assert {
    condition = jsonencode([
      for rule in [
        aws_vpc_security_group_ingress_rule.api_amqp_from_workers,
        aws_vpc_security_group_ingress_rule.api_http_from_workers,
      ] : [rule.from_port, rule.referenced_security_group_id, rule.cidr_ipv4]
      ]) == jsonencode([
      [5672, aws_security_group.workers.id, null],
      [8080, aws_security_group.workers.id, null],
    ])
    error_message = "RabbitMQ and the API from the training hosts' group only"
  }
}

run "training_hosts_share_the_given_secrets" {
  variables {
    worker_count      = 2
    worker_token      = "@TOKEN@"
    rabbitmq_password = "@PASSWORD@"
  }
  assert {
    condition     = jsonencode(local.zones_offering_all_types) == jsonencode(["eu-west-1b"])
    error_message = "zones offering both types: ${jsonencode(local.zones_offering_all_types)}"
  }
  assert {
    condition = strcontains(nonsensitive(local.api_user_data), join("\\n", [
      "args=(--role 'api')",
      "args+=(--worker-token '@TOKEN@' --broker-password '@PASSWORD@')",
      "scripts/provision.sh",
    ]))
    error_message = "the API host's user data"
  }
  assert {
    condition = strcontains(nonsensitive(aws_instance.worker[1].user_data), join(" ", [
      "\\nscripts/provision.sh --role worker --api-url 'http://10.0.1.5:8080'",
      "--broker-url 'amqp://sweeplab:@PASSWORD@@10.0.1.5:5672/sweeplab'",
      "--worker-token '@TOKEN@'\\n",
    ]))
    error_message = "a training host's user data"
  }
  assert {
    condition = alltrue([
      length(aws_instance.worker) == 2,
      aws_instance.worker[0].instance_type == "t3.large",
      aws_instance.worker[0].vpc_security_group_ids == toset([aws_security_group.workers.id]),
    ])
    error_message = "the training hosts"
  }
}

run "a_domain_and_secrets_without_training_hosts" {
  command   = plan
  state_key = "given_subnet" # new hosts: the others' are never moved to another subnet
  variables {
    worker_token      = "@TOKEN@"
    rabbitmq_password = "@PASSWORD@"
    subnet_id         = "subnet-given"
    domain            = "sweeplab.example.com"
  }
  assert {
    condition     = output.api_url == "https://sweeplab.example.com"
    error_message = "api_url: ${output.api_url}"
  }
  assert {
    condition = strcontains(nonsensitive(local.api_user_data), join("\\n", [
      "args=(--role 'all')",
      "args+=(--domain 'sweeplab.example.com')",
      "args+=(--worker-token '@TOKEN@' --broker-password '@PASSWORD@')",
      "scripts/provision.sh",
    ]))
    error_message = "the API host's user data"
  }
  assert {
    condition = (
      aws_instance.api.subnet_id == "subnet-given"
      && aws_security_group.api.vpc_id == "vpc-given"
    )
    error_message = "the given subnet and its VPC"
  }
  assert {
    condition = alltrue([
      length(aws_vpc_security_group_ingress_rule.api_http_from_admin) == 0,
      aws_vpc_security_group_ingress_rule.api_https_from_admin[0].cidr_ipv4 == "203.0.113.7/32",
      aws_vpc_security_group_ingress_rule.api_acme_challenge[0].from_port == 80,
    ])
    error_message = "with a domain: HTTPS from admin_cidr, port 80 for ACME, no 8080"
  }
}
""".replace("@TOKEN@", TOKEN).replace("@PASSWORD@", PASSWORD)


def test_module_wiring_against_a_mocked_aws(initialised):
    module, env = initialised
    tests = module / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "wiring.tftest.hcl").write_text(WIRING_TEST)
    output = terraform(module, env, "test")
    runs = WIRING_TEST.count('\nrun "')
    assert f"Success! {runs} passed, 0 failed." in output, output


REQUIRED = {"region": "eu-west-1", "admin_cidr": "203.0.113.7/32",
            "repo_url": "https://example.com/sweeplab.git"}


@pytest.mark.parametrize(("values", "refused"), [
    ({}, None),
    ({"worker_count": 2, "worker_token": TOKEN, "rabbitmq_password": PASSWORD}, None),
    ({"worker_token": TOKEN, "rabbitmq_password": PASSWORD, "domain": "a.example.com"}, None),
    ({"worker_count": 1}, "worker_token"),
    ({"worker_count": 1, "worker_token": TOKEN}, "rabbitmq_password"),
    ({"rabbitmq_password": PASSWORD}, "rabbitmq_password"),
    ({"worker_token": TOKEN, "rabbitmq_password": TOKEN}, "rabbitmq_password"),
    ({"worker_token": "short", "rabbitmq_password": PASSWORD}, "worker_token"),
    ({"worker_token": TOKEN + "!", "rabbitmq_password": PASSWORD}, "worker_token"),
    ({"worker_count": 1.5}, "worker_count"),
    ({"admin_cidr": "203.0.113.7"}, "admin_cidr"),
    ({"admin_cidr": "2001:db8::/32"}, "admin_cidr"),
    ({"repo_ref": "--upload-pack=touch /tmp/x"}, "repo_ref"),
    ({"repo_url": "https://example.com/a b"}, "repo_url"),
    ({"domain": "Not a domain"}, "domain"),
    ({"worker_count": 1, "worker_token": TOKEN, "rabbitmq_password": PASSWORD,
      "domain": "a.example.com"}, "domain"),
    ({"ami": "debian-12"}, "ami"),
])
def test_variables_refuse_what_cannot_work(tmp_path, values, refused):
    """variables.tf alone, with no provider to load: each case takes a fraction of a second."""
    require(plugins=False)
    shutil.copy(MODULE / "variables.tf", tmp_path)
    (tmp_path / "values.tfvars.json").write_text(json.dumps({**REQUIRED, **values}))
    env = terraform_env(tmp_path)
    terraform(tmp_path, env, "init", "-backend=false", "-input=false")
    done = subprocess.run(["terraform", "plan", "-no-color", "-input=false",
                           "-var-file=values.tfvars.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    if refused is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1 and "Invalid value for variable" in done.stderr, done.stderr
        assert refused in refused_variables(done.stderr), done.stderr


def refused_variables(errors: str) -> list[str]:
    """The variables whose validation rules the errors name ("rule at variables.tf:LINE,...")."""
    lines = (MODULE / "variables.tf").read_text().splitlines()
    refused = []
    for number in re.findall(r"validation rule at variables\.tf:(\d+),", errors):
        above = reversed(lines[:int(number)])
        refused.append(next(m[1] for line in above if (m := re.match(r'variable "(\w+)"', line))))
    return refused


def quoted(value: str | None) -> str | None:
    """As instances.tf hands every value to the templates: single-quoted for the shell."""
    return None if value is None else "'" + value.replace("'", "'\\''") + "'"


def render(tmp_path: Path, template: str, values: dict[str, str | None]) -> str:
    """The template rendered by Terraform's own templatefile (no provider needed)."""
    work = tmp_path / f"render-{template}"
    work.mkdir()
    (work / "main.tf").write_text(
        'variable "values" { type = map(string) }\n'
        f'output "rendered" {{ value = templatefile("{TEMPLATES / template}", var.values) }}\n')
    (work / "values.tfvars.json").write_text(
        json.dumps({"values": {k: quoted(v) for k, v in values.items()}}))
    env = terraform_env(work)
    terraform(work, env, "init", "-backend=false", "-input=false")
    terraform(work, env, "apply", "-auto-approve", "-input=false", "-var-file=values.tfvars.json")
    return json.loads(terraform(work, env, "output", "-json"))["rendered"]["value"]


PROVISION = 'printf "%s\\n" "$@" > "$CALLS/provision"'
STUBS = {
    "apt-get": "exit 0",
    "curl": 'printf "%s\\n" "$*" >> "$CALLS/curl"',
    # git: records the call; init makes the directory, checkout brings the fake repository's
    # scripts/provision.sh, which records its arguments, one per line.
    "git": """printf "%s\\n" "$*" >> "$CALLS/git"
case "$1" in
  init) mkdir -p "${@: -1}" ;;
  checkout) cp -r "$REPO/scripts" . ;;
esac""",
}


def run_user_data(tmp_path: Path, script: str) -> dict[str, list[str]]:
    """Runs the user data as cloud-init would, with apt-get, git and curl stubbed and the
    checkout in tmp_path; returns what each stub, and provision.sh, was called with."""
    assert script.startswith("#!/bin/bash\n") and script.count(SRC) == 1
    stubs, calls, repo = tmp_path / "stubs", tmp_path / "calls", tmp_path / "repo"
    for folder in (stubs, calls, repo / "scripts"):
        folder.mkdir(parents=True)
    for path, body in [*((stubs / name, body) for name, body in STUBS.items()),
                       (repo / "scripts" / "provision.sh", PROVISION)]:
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    user_data = tmp_path / "user-data"
    user_data.write_text(script.replace(SRC, str(tmp_path / "src")))
    syntax = subprocess.run(["bash", "-n", str(user_data)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(calls), "REPO": str(repo),
           "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(user_data)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return {path.name: path.read_text().splitlines() for path in calls.iterdir()}


def assert_secrets_only_on_command_lines(script: str, *secrets: str) -> None:
    """A secret is only ever an argument: not traced, not echoed, not written to a file."""
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not re.search(r"set\s+-[a-z]*x|xtrace|bash\s+-[a-z]*x", "\n".join(code))
    for line in code:
        if any(secret in line for secret in secrets):
            assert line.startswith(("args+=(", "scripts/provision.sh ")), line
            assert not re.search(r"[<>|]|\b(tee|echo|printf|cat|install|cp|dd)\b", line), line


GIT_CALLS = ["remote add origin https://example.com/it's/sweeplab.git",
             "fetch -q --depth 1 origin v1.2", "checkout -q FETCH_HEAD"]
CHECKOUT = {"repo_url": "https://example.com/it's/sweeplab.git", "repo_ref": "v1.2"}


def test_api_user_data_alone(tmp_path):
    require(plugins=False)
    values = {**CHECKOUT, "role": "all", "domain": None,
              "worker_token": None, "broker_password": None}
    script = render(tmp_path, "api.sh.tftpl", values)
    calls = run_user_data(tmp_path, script)
    assert calls["provision"] == ["--role", "all"]
    assert calls["git"] == [f"init -q {tmp_path / 'src'}", *GIT_CALLS]
    assert "curl" not in calls


def test_api_user_data_with_training_hosts(tmp_path):
    require(plugins=False)
    values = {**CHECKOUT, "role": "api", "domain": None,
              "worker_token": TOKEN, "broker_password": PASSWORD}
    script = render(tmp_path, "api.sh.tftpl", values)
    assert_secrets_only_on_command_lines(script, TOKEN, PASSWORD)
    calls = run_user_data(tmp_path, script)
    assert calls["provision"] == ["--role", "api",
                                  "--worker-token", TOKEN, "--broker-password", PASSWORD]


def test_api_user_data_with_a_domain(tmp_path):
    require(plugins=False)
    values = {**CHECKOUT, "role": "all", "domain": "sweeplab.example.com",
              "worker_token": None, "broker_password": None}
    calls = run_user_data(tmp_path, render(tmp_path, "api.sh.tftpl", values))
    assert calls["provision"] == ["--role", "all", "--domain", "sweeplab.example.com"]


def test_worker_user_data(tmp_path):
    require(plugins=False)
    broker_url = f"amqp://sweeplab:{PASSWORD}@10.0.1.5:5672/sweeplab"
    values = {**CHECKOUT, "api_url": "http://10.0.1.5:8080", "broker_url": broker_url,
              "worker_token": TOKEN}
    script = render(tmp_path, "worker.sh.tftpl", values)
    assert_secrets_only_on_command_lines(script, TOKEN, PASSWORD)
    calls = run_user_data(tmp_path, script)
    assert calls["curl"] == ["-fsS -o /dev/null --max-time 5 http://10.0.1.5:8080/healthz"]
    assert calls["git"] == [f"init -q {tmp_path / 'src'}", *GIT_CALLS]
    assert calls["provision"] == ["--role", "worker", "--api-url", "http://10.0.1.5:8080",
                                  "--broker-url", broker_url, "--worker-token", TOKEN]


def test_templates_name_each_role_and_trace_nothing():
    api = (TEMPLATES / "api.sh.tftpl").read_text()
    worker = (TEMPLATES / "worker.sh.tftpl").read_text()
    assert "args=(--role ${role})" in api and 'scripts/provision.sh "$${args[@]}"' in api
    assert "args+=(--worker-token ${worker_token} --broker-password ${broker_password})" in api
    assert ("scripts/provision.sh --role worker --api-url ${api_url} --broker-url ${broker_url}"
            " --worker-token ${worker_token}\n") in worker
    instances = (MODULE / "instances.tf").read_text()
    assert 'api_role = var.worker_count > 0 ? "api" : "all"' in instances
    for template in (api, worker):
        assert_secrets_only_on_command_lines(
            template, "${worker_token}", "${broker_password}", "${broker_url}")


def test_readme_lists_every_variable_and_output():
    code = "\n".join(path.read_text() for path in MODULE.glob("*.tf"))
    readme = (MODULE / "README.md").read_text()
    variables = readme.split("## Variables", 1)[1].split("##", 1)[0]
    outputs = readme.split("## Outputs", 1)[1].split("##", 1)[0]
    for kind, table in (("variable", variables), ("output", outputs)):
        declared = set(re.findall(rf'^{kind} "(\w+)"', code, re.M))
        documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
        assert declared == documented, kind
