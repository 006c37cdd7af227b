#!/usr/bin/env bash
# Offline checks of infra/ (no provider download needed), run by CI:
#   1. terraform fmt -check -recursive
#   2. terraform init -backend=false + terraform test in every provider-free
#      folder that has tests/*.tftest.hcl
#   3. grep-level guardrails over every .tf file: no basic roles, no service
#      account keys, no project/folder/organization-level token creator or
#      service account user; plus a negative self-test proving the guardrail
#      fails on a bad snippet
#   4. module shape: required files, pinned providers, no provider blocks in
#      modules, typed and described variables, described outputs
#   5. the environments are thin roots (<= 30 lines) calling infra/stack (they differ only
#      in terraform.tfvars and backend.hcl)
#   6. against the FAKE google provider (crates/fake-google-provider, schema of the pinned
#      hashicorp/google 8.7.0; never used for apply): terraform init -backend=false and
#      validate of every module and environment, plan of dev/staging/prod with their
#      terraform.tfvars, `fintrail iam check` of each plan's JSON, and a negative suite of
#      broken copies that must fail with the expected message
# Ends with: infra: N passed, M failed
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TERRAFORM="${TERRAFORM:-terraform}"
export TF_IN_AUTOMATION=1
export CHECKPOINT_DISABLE=1
REPO_DIR="$(cd "$INFRA_DIR/.." && pwd)"
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT

# The google provider is never downloaded: the CLI config points Terraform at a filesystem
# mirror holding only the FAKE stand-in (installed into it below, before the plan checks).
PROVIDER_VERSION="8.7.0"
MIRROR_DIR="$WORK_DIR/mirror"
TF_CLI_CONFIG_FILE="$WORK_DIR/terraform.rc"
export TF_CLI_CONFIG_FILE
cat >"$TF_CLI_CONFIG_FILE" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR_DIR"
    include = ["registry.terraform.io/hashicorp/google"]
  }
}
EOF
# The stand-in speaks plaintext gRPC on 127.0.0.1 (no mTLS handshake to implement).
export TF_DISABLE_PLUGIN_TLS=1
export FAKE_GOOGLE_PROVIDER_SCHEMA="${FAKE_GOOGLE_PROVIDER_SCHEMA:-$REPO_DIR/.deps/fake-google-provider/schema-$PROVIDER_VERSION.json}"

passed=0
failed=0

pass() {
  passed=$((passed + 1))
  printf 'ok    %s\n' "$1"
}

fail() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
}

# Every .tf file under a directory, skipping .terraform working directories.
tf_files() {
  find "$1" -name .terraform -prune -o -type f -name '*.tf' -print | sort
}

# ---------------------------------------------------------------- guardrails
# Prints every finding as file:line: reason and returns 1 when there is one.
guardrail_scan() {
  local dir="$1" findings=0 files

  files="$(tf_files "$dir")"
  [ -n "$files" ] || return 0

  # Basic roles and service-account keys, anywhere in any .tf or .tfvars file (a role can come
  # from a variable's value as well as from code).
  # shellcheck disable=SC2086
  if grep -nHE '(roles/(owner|editor|viewer)([^A-Za-z0-9_.]|$)|google_service_account_key)' $files $(find "$dir" -name .terraform -prune -o -type f -name '*.tfvars' -print | sort); then
    findings=1
  fi

  # Token creator / service account user inside a project-, folder- or
  # organization-level IAM resource block (brace depth tracked per block).
  # shellcheck disable=SC2086
  if ! awk '
    FNR == 1 { depth = 0; inblock = 0 }
    {
      line = $0
      sub(/#.*/, "", line)
      sub(/\/\/.*/, "", line)
      if (!inblock && line ~ /^[[:space:]]*resource[[:space:]]+"google_(project|folder|organization)_iam_(member|binding|policy)"/) {
        inblock = 1
        depth = 0
        match(line, /"google_[a-z_]+"[[:space:]]+"[^"]+"/)
        block = substr(line, RSTART, RLENGTH)
        gsub(/"/, "", block)
        sub(/[[:space:]]+/, ".", block)
      }
      if (inblock) {
        if (line ~ /roles\/iam\.serviceAccount(TokenCreator|User)/) {
          printf "%s:%d: %s grants a service-account impersonation role beyond one service account: %s\n", FILENAME, FNR, block, $0
          bad = 1
        }
        opens = gsub(/\{/, "{", line)
        closes = gsub(/\}/, "}", line)
        depth += opens - closes
        if (depth <= 0 && (opens > 0 || closes > 0)) { inblock = 0 }
      }
    }
    END { exit bad ? 1 : 0 }
  ' $files; then
    findings=1
  fi

  return "$findings"
}

# The same rules on a plan's JSON (`terraform show -json`), where every role is resolved, also
# those that the code only names as `each.value.role`: basic roles in any IAM resource or dataset
# ACL, service-account keys, and token creator / service account user bound on a project,
# folder or organization. Prints each finding; returns 1 when there is one.
plan_guardrail_scan() {
  python3 - "$1" <<'PY'
import json, re, sys
plan = json.load(open(sys.argv[1]))
basic = re.compile(r"^(roles/)?(owner|editor|viewer|OWNER|WRITER|READER)$")
impersonation = {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser"}
bad = []
def walk(module, depth):
    assert depth < 32, "module nesting"
    for r in module.get("resources", []):
        t, v, a = r.get("type", ""), r.get("values") or {}, r.get("address", "")
        if t == "google_service_account_key":
            bad.append(f"{a}: service-account key")
        roles = [v.get("role")] + [e.get("role") for e in v.get("access") or [] if isinstance(e, dict)]
        roles += [b.get("role") for b in v.get("binding") or [] if isinstance(b, dict)]
        for role in filter(None, roles):
            if basic.match(role):
                bad.append(f"{a}: basic role {role}")
            if role in impersonation and re.match(r"google_(project|folder|organization)_iam_", t):
                bad.append(f"{a}: {role} granted beyond one service account")
    for c in module.get("child_modules", []):
        walk(c, depth + 1)
walk(plan.get("planned_values", {}).get("root_module", {}), 0)
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}

# ------------------------------------------------------------ module shape
shape_scan() {
  local dir="$1" findings=0 f

  for f in versions.tf variables.tf outputs.tf main.tf README.md; do
    if [ ! -f "$dir/$f" ]; then
      echo "$dir: missing $f"
      findings=1
    fi
  done

  if [ -f "$dir/versions.tf" ] && ! grep -q 'required_version' "$dir/versions.tf"; then
    echo "$dir/versions.tf: no required_version"
    findings=1
  fi

  # A module that uses google resources must pin the provider (source + version).
  if grep -qE '^(resource|data) "google_' "$dir"/*.tf 2>/dev/null; then
    if ! grep -q 'source *= *"hashicorp/google"' "$dir/versions.tf" || ! grep -qE '^ *version *= *"' "$dir/versions.tf"; then
      echo "$dir/versions.tf: google provider not pinned (source and version)"
      findings=1
    fi
  fi

  if grep -nE '^[[:space:]]*provider[[:space:]]+"' "$dir"/*.tf; then
    echo "$dir: provider block inside a module"
    findings=1
  fi

  # Every variable has a type and a description; every output a description.
  if ! awk '
    function check() {
      if (kind == "variable" && (!has_type || !has_desc)) { printf "%s: variable %s lacks %s\n", FILENAME, name, (!has_type ? "a type" : "a description"); bad = 1 }
      if (kind == "output" && !has_desc) { printf "%s: output %s lacks a description\n", FILENAME, name; bad = 1 }
    }
    /^(variable|output) "/ { kind = $1; name = $2; has_type = 0; has_desc = 0; open = 1; next }
    open && /^  type[[:space:]]*=/ { has_type = 1 }
    open && /^  description[[:space:]]*=/ { has_desc = 1 }
    open && /^}/ { check(); open = 0 }
    END { exit bad ? 1 : 0 }
  ' "$dir/variables.tf" "$dir/outputs.tf"; then
    findings=1
  fi

  return "$findings"
}

# ------------------------------------------------------------------- checks
echo "== fmt"
if "$TERRAFORM" fmt -check -recursive "$INFRA_DIR" >"$WORK_DIR/fmt.out" 2>&1; then
  pass "terraform fmt -check -recursive infra"
else
  cat "$WORK_DIR/fmt.out"
  fail "terraform fmt -check -recursive infra"
fi

# Negative self-test: fmt -check fails on a badly formatted file.
mkdir -p "$WORK_DIR/bad_fmt"
printf 'variable "x" {\n  type=string\n    description = "x"\n}\n' >"$WORK_DIR/bad_fmt/main.tf"
if "$TERRAFORM" fmt -check -recursive "$WORK_DIR/bad_fmt" >/dev/null 2>&1; then
  fail "self-test: terraform fmt -check accepted a badly formatted file"
else
  pass "self-test: terraform fmt -check rejects a badly formatted file"
fi

echo "== provider-free tests"
while IFS= read -r test_dir; do
  rel="${test_dir#"$INFRA_DIR"/}"
  if (cd "$test_dir" && "$TERRAFORM" init -backend=false -input=false -no-color >"$WORK_DIR/init.out" 2>&1 &&
    "$TERRAFORM" test -no-color >"$WORK_DIR/test.out" 2>&1); then
    pass "terraform test $rel ($(grep -oE '[0-9]+ passed' "$WORK_DIR/test.out" | tail -1))"
  else
    cat "$WORK_DIR/init.out" "$WORK_DIR/test.out" 2>/dev/null || true
    fail "terraform test $rel"
  fi
done < <(find "$INFRA_DIR" -name .terraform -prune -o -type f -name '*.tftest.hcl' -print | xargs -r -n1 dirname | xargs -r -n1 dirname | sort -u)

echo "== guardrails"
if guardrail_scan "$INFRA_DIR"; then
  pass "no basic role, no service-account key, no project-wide token creator / service account user in $(tf_files "$INFRA_DIR" | wc -l) .tf files"
else
  fail "guardrails (findings above)"
fi

# Negative self-test: the guardrail must reject known-bad snippets.
mkdir -p "$WORK_DIR/bad_project_tc" "$WORK_DIR/bad_basic" "$WORK_DIR/bad_key" "$WORK_DIR/good_sa_tc"
cat >"$WORK_DIR/bad_project_tc/main.tf" <<'EOF'
resource "google_project_iam_member" "oops" {
  project = "p"
  member  = "serviceAccount:a@p.iam.gserviceaccount.com"
  role    = "roles/iam.serviceAccountTokenCreator"
}
EOF
cat >"$WORK_DIR/bad_basic/main.tf" <<'EOF'
resource "google_storage_bucket_iam_member" "oops" {
  bucket = "b"
  role   = "roles/editor"
  member = "group:g@example.com"
}
EOF
cat >"$WORK_DIR/bad_key/main.tf" <<'EOF'
resource "google_service_account_key" "oops" {
  service_account_id = "projects/p/serviceAccounts/a@p.iam.gserviceaccount.com"
}
EOF
cat >"$WORK_DIR/good_sa_tc/main.tf" <<'EOF'
resource "google_project_iam_member" "fine" {
  project = "p"
  role    = "projects/p/roles/fintrail_dev_log_write"
  member  = "serviceAccount:a@p.iam.gserviceaccount.com"
}

resource "google_service_account_iam_member" "fine" {
  service_account_id = "projects/p/serviceAccounts/b@p.iam.gserviceaccount.com"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:a@p.iam.gserviceaccount.com"
}
EOF
mkdir -p "$WORK_DIR/bad_tfvars"
printf 'roles = { "roles/viewer" = ["group:g@example.com"] }\n' >"$WORK_DIR/bad_tfvars/terraform.tfvars"
printf 'variable "roles" {\n  type        = map(list(string))\n  description = "r"\n}\n' >"$WORK_DIR/bad_tfvars/main.tf"
for bad in bad_project_tc bad_basic bad_key bad_tfvars; do
  if out="$(guardrail_scan "$WORK_DIR/$bad" 2>&1)"; then
    fail "self-test: guardrail accepted $bad"
  else
    pass "self-test: guardrail rejects $bad ($(printf '%s\n' "$out" | head -1 | sed -e "s#^$WORK_DIR/##" | cut -c1-90))"
  fi
done
if out="$(guardrail_scan "$WORK_DIR/good_sa_tc" 2>&1)"; then
  pass "self-test: guardrail accepts token creator on one service account"
else
  echo "$out"
  fail "self-test: guardrail rejected a token creator bound on one service account"
fi

echo "== module shape"
for module_dir in "$INFRA_DIR"/modules/*/ "$INFRA_DIR"/modules/*/*/ "$INFRA_DIR"/lib/*/ "$INFRA_DIR"/stack/ "$INFRA_DIR"/stack/*/ "$INFRA_DIR"/envs/*/; do
  module_dir="${module_dir%/}"
  case "$module_dir" in */tests | */.terraform) continue ;; esac
  [ -f "$module_dir/main.tf" ] || [ -f "$module_dir/variables.tf" ] || continue
  rel="${module_dir#"$INFRA_DIR"/}"
  if [[ "$rel" == envs/* ]]; then
    # Roots may (must) hold the provider; check variables/outputs only.
    if out="$(awk '
      /^(variable|output) "/ { kind = $1; name = $2; t = 0; d = 0; open = 1; next }
      open && /^  type[[:space:]]*=/ { t = 1 }
      open && /^  description[[:space:]]*=/ { d = 1 }
      open && /^}/ { if ((kind == "variable" && (!t || !d)) || (kind == "output" && !d)) { print FILENAME ": " kind " " name " incomplete"; bad = 1 } open = 0 }
      END { exit bad ? 1 : 0 }' "$module_dir/variables.tf" "$module_dir/outputs.tf")" &&
      grep -q 'backend "gcs" {}' "$module_dir/versions.tf" && [ -f "$module_dir/backend.hcl" ] && [ -f "$module_dir/terraform.tfvars" ]; then
      pass "shape $rel (typed variables, partial gcs backend, backend.hcl, terraform.tfvars)"
    else
      echo "$out"
      fail "shape $rel"
    fi
    continue
  fi
  if out="$(shape_scan "$module_dir" 2>&1)"; then
    pass "shape $rel"
  else
    echo "$out"
    fail "shape $rel"
  fi
done

# Negative self-test: the shape scan refuses a module with no README, an unpinned provider, a
# provider block and an untyped, undescribed variable, naming each.
mkdir -p "$WORK_DIR/bad_shape"
printf 'provider "google" {}\n\nresource "google_storage_bucket" "b" {\n  name     = var.name\n  location = "EU"\n}\n' >"$WORK_DIR/bad_shape/main.tf"
printf 'variable "name" {\n}\n' >"$WORK_DIR/bad_shape/variables.tf"
printf 'terraform {\n  required_version = ">= 1.6.0"\n}\n' >"$WORK_DIR/bad_shape/versions.tf"
: >"$WORK_DIR/bad_shape/outputs.tf"
out="$(shape_scan "$WORK_DIR/bad_shape" 2>&1)" && status=0 || status=$?
missing=""
for want in "missing README.md" "google provider not pinned" "provider block inside a module" "variable \"name\" lacks a type"; do
  printf '%s\n' "$out" | grep -qF -- "$want" || missing="$missing [$want]"
done
if [ "$status" -ne 0 ] && [ -z "$missing" ]; then
  pass "self-test: shape scan rejects a module without README, pin, with a provider block and an untyped variable"
else
  printf '%s\n' "$out"
  fail "self-test: shape scan missed:$missing"
fi

echo "== environments"
# One stack: envs/<env> are thin roots (provider, backend, one call of infra/stack) of at most
# this many lines of HCL; everything else is infra/stack, so nothing can be copied between them.
MAX_ROOT_LINES=30
root_lines() { cat "$1"/*.tf | wc -l; }
for env_dir in "$INFRA_DIR"/envs/*/; do
  env_dir="${env_dir%/}"
  lines="$(root_lines "$env_dir")"
  if [ "$lines" -le "$MAX_ROOT_LINES" ] && grep -q 'source = "../../stack"' "$env_dir/main.tf"; then
    pass "envs/${env_dir##*/} is a thin root: $lines lines of HCL, one call of infra/stack"
  else
    fail "envs/${env_dir##*/}: $lines lines of HCL (at most $MAX_ROOT_LINES) or no call of infra/stack"
  fi
done
# Negative self-test: a root that composes modules itself is refused.
mkdir -p "$WORK_DIR/fat_root"
cp "$INFRA_DIR"/envs/dev/*.tf "$WORK_DIR/fat_root/"
printf 'module "extra" {\n  source = "../../modules/redis"\n}\n' >>"$WORK_DIR/fat_root/main.tf"
for _ in 1 2 3 4 5 6 7 8 9 10; do printf '\n# padding\n' >>"$WORK_DIR/fat_root/main.tf"; done
if [ "$(root_lines "$WORK_DIR/fat_root")" -gt "$MAX_ROOT_LINES" ]; then
  pass "self-test: a root of $(root_lines "$WORK_DIR/fat_root") lines is refused"
else
  fail "self-test: the thin-root limit did not catch a fat root"
fi

for env in dev staging prod; do
  if grep -q "^ *environment *= *\"$env\"" "$INFRA_DIR/envs/$env/terraform.tfvars" &&
    grep -q "prefix *= *\"envs/$env\"" "$INFRA_DIR/envs/$env/backend.hcl"; then
    pass "envs/$env: tfvars and backend.hcl name the $env environment"
  else
    fail "envs/$env: tfvars or backend.hcl do not match the folder"
  fi
done

# ------------------------------------------------- validate and plan (FAKE google provider)
echo "== plan against the FAKE google provider (hashicorp/google $PROVIDER_VERSION schema)"
TREE="$WORK_DIR/repo/infra"

# A scratch copy of infra/ (init writes .terraform/ and lock files, the plan a local backend)
# under DEST/infra, beside the one file outside infra/ the roots read: Datastream's column list.
scratch_copy() {
  mkdir -p "$1/infra" "$1/analytics"
  (cd "$INFRA_DIR" && tar --exclude=.terraform --exclude=.terraform.lock.hcl -cf - .) | tar -xf - -C "$1/infra"
  cp "$REPO_DIR/analytics/datastream.json" "$1/analytics/"
}
# Limit: one plan takes ~15 s on 2 cores; a step that hangs fails after this many seconds.
STEP_TIMEOUT_SECONDS=300

# Binaries: the stand-in and `fintrail` (iam check), built from this tree (no-ops when fresh).
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
FAKE_PROVIDER_BIN="$TARGET_DIR/debug/fake-google-provider"
FINTRAIL_BIN="$TARGET_DIR/debug/fintrail"
# `fintrail` links DuckDB's library, installed by ./dev setup (as ./dev exports it).
export DUCKDB_LIB_DIR="${DUCKDB_LIB_DIR:-$REPO_DIR/.deps/duckdb}"
export LD_LIBRARY_PATH="$DUCKDB_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
plan_ready=1
if ! (cd "$REPO_DIR" && cargo build --locked --quiet -p fake-google-provider -p fintrail) >"$WORK_DIR/build.out" 2>&1; then
  cat "$WORK_DIR/build.out"
  fail "cargo build -p fake-google-provider -p fintrail"
  plan_ready=0
elif [ ! -f "$FAKE_GOOGLE_PROVIDER_SCHEMA" ]; then
  fail "no provider schema at $FAKE_GOOGLE_PROVIDER_SCHEMA: run ./dev setup (it derives it from the pinned wheel)"
  plan_ready=0
else
  # The filesystem mirror's unpacked layout; the executable's name says what it is.
  mirror_pkg="$MIRROR_DIR/registry.terraform.io/hashicorp/google/$PROVIDER_VERSION/linux_amd64"
  mkdir -p "$mirror_pkg"
  cp "$FAKE_PROVIDER_BIN" "$mirror_pkg/terraform-provider-google_v${PROVIDER_VERSION}_FAKE_offline_standin"
  scratch_copy "$WORK_DIR/repo"
fi

tf() { timeout "$STEP_TIMEOUT_SECONDS" "$TERRAFORM" "$@" -no-color; }

# init -backend=false + validate of one folder; prints Terraform's output on failure.
validate_dir() {
  local dir="$1" out="$2"
  (cd "$dir" && tf init -backend=false -input=false && tf validate) >"$out" 2>&1
}

# validate + plan of one root with a local backend (the partial gcs backend needs a bucket).
plan_dir() {
  local dir="$1" out="$2"
  printf 'terraform {\n  backend "local" {}\n}\n' >"$dir/backend_override.tf"
  (cd "$dir" && tf init -input=false && tf validate && tf plan -input=false -lock=false -out=plan.bin) >"$out" 2>&1
}

if [ "$plan_ready" -eq 1 ]; then
  # Every module (and provider-free library) validates against the provider's schema.
  for module_dir in "$TREE"/modules/*/ "$TREE"/modules/*/*/ "$TREE"/lib/*/ "$TREE"/stack/ "$TREE"/stack/*/; do
    module_dir="${module_dir%/}"
    case "$module_dir" in */tests | */.terraform) continue ;; esac
    [ -f "$module_dir/main.tf" ] || continue
    rel="${module_dir#"$TREE"/}"
    if validate_dir "$module_dir" "$WORK_DIR/validate.out"; then
      pass "validate $rel"
    else
      cat "$WORK_DIR/validate.out"
      fail "validate $rel"
    fi
  done

  # Every environment plans with its terraform.tfvars; its plan JSON passes fintrail iam check.
  for env in dev staging prod; do
    env_dir="$TREE/envs/$env"
    if ! plan_dir "$env_dir" "$WORK_DIR/plan-$env.out"; then
      cat "$WORK_DIR/plan-$env.out"
      fail "plan envs/$env"
      continue
    fi
    resources="$(grep -oE '^Plan: [0-9]+ to add, [0-9]+ to change, [0-9]+ to destroy' "$WORK_DIR/plan-$env.out" || true)"
    pass "plan envs/$env ($resources)"
    if ! (cd "$env_dir" && tf show -json plan.bin) >"$WORK_DIR/plan-$env.json" 2>"$WORK_DIR/show-$env.err"; then
      cat "$WORK_DIR/show-$env.err"
      fail "terraform show -json envs/$env"
      continue
    fi
    if out="$(plan_guardrail_scan "$WORK_DIR/plan-$env.json" 2>&1)"; then
      pass "guardrails on the envs/$env plan (no basic role, key, project-wide impersonation)"
    else
      echo "$out"
      fail "guardrails on the envs/$env plan"
    fi
    # Two adaptations of the input, both until crates/iam does them itself (see infra/README.md):
    # - a custom role created in the same plan has its `name` unknown until apply; the provider
    #   sets it to projects/<project>/roles/<role_id>, so it is filled in from those two;
    # - the registry holds every environment's exceptions; one environment's plan is checked
    #   against its own (the others' would be reported unused).
    if ! python3 - "$WORK_DIR/plan-$env.json" "$INFRA_DIR/policy/exceptions.toml" "$env" "$WORK_DIR/exceptions-$env.toml" <<'PY' >"$WORK_DIR/iam-$env.out" 2>&1; then
import json, sys, tomllib
plan_path, registry, env, out = sys.argv[1:]
plan = json.load(open(plan_path))
def walk(module):
    for r in module.get("resources", []):
        v = r.get("values", {})
        if r.get("type") == "google_project_iam_custom_role" and not v.get("name"):
            assert v.get("project") and v.get("role_id"), r["address"]
            v["name"] = "projects/%s/roles/%s" % (v["project"], v["role_id"])
    for c in module.get("child_modules", []):
        walk(c)
walk(plan["planned_values"]["root_module"])
json.dump(plan, open(plan_path, "w"))
mine = [e for e in tomllib.load(open(registry, "rb")).get("exception", []) if "fintrail-%s-" % env in e["resource"] + e["member"]]
with open(out, "w") as f:
    for e in mine:
        f.write("[[exception]]\n" + "".join("%s = %s\n" % (k, json.dumps(v)) for k, v in e.items()) + "\n")
PY
      cat "$WORK_DIR/iam-$env.out"
      fail "prepare the envs/$env plan JSON for fintrail iam check"
      continue
    fi
    if (cd "$REPO_DIR" && "$FINTRAIL_BIN" iam check "$WORK_DIR/plan-$env.json" --exceptions "$WORK_DIR/exceptions-$env.toml") >"$WORK_DIR/iam-$env.out" 2>&1; then
      pass "fintrail iam check of the envs/$env plan ($(grep -E '^summary:' "$WORK_DIR/iam-$env.out" | cut -c1-100))"
    else
      cat "$WORK_DIR/iam-$env.out"
      fail "fintrail iam check of the envs/$env plan"
    fi
  done

  # Negative self-test: fintrail iam check fails on a plan that grants a basic role.
  printf '{"format_version":"1.2","planned_values":{"root_module":{"resources":[{"address":"google_project_iam_member.oops","mode":"managed","type":"google_project_iam_member","name":"oops","values":{"project":"fintrail-dev","role":"roles/editor","member":"user:someone@fintrail.example"}}]}}}' >"$WORK_DIR/bad_iam_plan.json"
  if (cd "$REPO_DIR" && "$FINTRAIL_BIN" iam check "$WORK_DIR/bad_iam_plan.json" --no-exceptions) >"$WORK_DIR/bad_iam.out" 2>&1; then
    cat "$WORK_DIR/bad_iam.out"
    fail "self-test: fintrail iam check passed a plan granting roles/editor"
  else
    pass "self-test: fintrail iam check fails a plan granting roles/editor ($(grep -E '^summary:' "$WORK_DIR/bad_iam.out" | cut -c1-60))"
  fi
fi

# Negative self-test of the plan guardrail: a project-level token creator named through
# each.value (which the .tf scan cannot see), a basic role from a variable, a dataset ACL entry
# with a basic role and a key must each be caught; a token creator on one account must not.
if [ "$plan_ready" -eq 1 ]; then
  plan_json() { printf '{"planned_values":{"root_module":{"child_modules":[{"resources":[%s]}]}}}' "$1"; }
  plan_json '{"address":"module.x.google_project_iam_member.this[\"k\"]","type":"google_project_iam_member","values":{"role":"roles/iam.serviceAccountTokenCreator","member":"user:a@b"}}' >"$WORK_DIR/bad_plan_tc.json"
  plan_json '{"address":"google_storage_bucket_iam_member.this[\"k\"]","type":"google_storage_bucket_iam_member","values":{"role":"roles/editor"}}' >"$WORK_DIR/bad_plan_basic.json"
  plan_json '{"address":"google_bigquery_dataset.d","type":"google_bigquery_dataset","values":{"access":[{"role":"OWNER","special_group":"projectOwners"}]}}' >"$WORK_DIR/bad_plan_acl.json"
  plan_json '{"address":"google_service_account_key.k","type":"google_service_account_key","values":{}}' >"$WORK_DIR/bad_plan_key.json"
  plan_json '{"address":"google_service_account_iam_member.ok","type":"google_service_account_iam_member","values":{"role":"roles/iam.serviceAccountTokenCreator"}}' >"$WORK_DIR/good_plan_tc.json"
  for bad in bad_plan_tc bad_plan_basic bad_plan_acl bad_plan_key; do
    if out="$(plan_guardrail_scan "$WORK_DIR/$bad.json" 2>&1)"; then
      fail "self-test: plan guardrail accepted $bad"
    else
      pass "self-test: plan guardrail rejects $bad ($(printf '%s\n' "$out" | head -1 | cut -c1-90))"
    fi
  done
  if plan_guardrail_scan "$WORK_DIR/good_plan_tc.json" >/dev/null 2>&1; then
    pass "self-test: plan guardrail accepts token creator on one service account"
  else
    fail "self-test: plan guardrail rejected a token creator bound on one service account"
  fi
fi

# Negative suite: broken copies of a module (validate) and of envs/dev (plan) must fail, each
# with Terraform's message for that mistake; their unbroken originals passed above.
# expect_broken NAME BASE(validate|plan) DIR FILE PERL_SUBSTITUTION EXPECTED_MESSAGE
expect_broken() {
  local name="$1" mode="$2" rel="$3" file="$4" edit="$5" expected="$6" copy="$WORK_DIR/broken/$1/infra"
  scratch_copy "$WORK_DIR/broken/$1"
  cp "$copy/$rel/$file" "$WORK_DIR/broken/$name.orig"
  perl -0pi -e "$edit" "$copy/$rel/$file"
  if cmp -s "$copy/$rel/$file" "$WORK_DIR/broken/$name.orig"; then
    fail "negative $name: the break did not apply to $rel/$file (the test would prove nothing)"
    return
  fi
  if [ "$mode" = validate ]; then
    validate_dir "$copy/$rel" "$WORK_DIR/broken/$name.out" && status=0 || status=$?
  else
    plan_dir "$copy/$rel" "$WORK_DIR/broken/$name.out" && status=0 || status=$?
  fi
  if [ "$status" -eq 0 ]; then
    fail "negative $name: $mode of the broken copy passed"
  elif tr -s '\n ' '  ' <"$WORK_DIR/broken/$name.out" | grep -qF -- "$expected"; then
    pass "negative $name: $mode fails with \"$expected\""
  else
    cat "$WORK_DIR/broken/$name.out"
    fail "negative $name: $mode failed without \"$expected\""
  fi
  rm -rf "$WORK_DIR/broken/$name"
}

if [ "$plan_ready" -eq 1 ]; then
  redis=modules/redis
  expect_broken misspelled_argument validate "$redis" main.tf 's/memory_size_gb     =/memory_size_gib    =/' \
    'An argument named "memory_size_gib" is not expected here.'
  expect_broken missing_required_argument validate "$redis" main.tf 's/\n  memory_size_gb     = var.memory_size_gb//' \
    'The argument "memory_size_gb" is required, but no definition was found.'
  expect_broken wrong_type validate "$redis" main.tf 's/auth_enabled            = true/auth_enabled            = ["yes"]/' \
    'Inappropriate value for attribute "auth_enabled": bool required.'
  expect_broken unknown_nested_block validate "$redis" main.tf 's/maintenance_policy \{/maintenance_polic {/' \
    'Blocks of type "maintenance_polic" are not expected here.'
  expect_broken undeclared_resource validate "$redis" main.tf 's/"PRIVATE_SERVICE_ACCESS"/google_compute_network.missing.id/' \
    'A managed resource "google_compute_network" "missing" has not been declared'
  expect_broken dependency_cycle validate "$redis" main.tf 's/\z/\nresource "google_redis_instance" "a" {\n  name           = google_redis_instance.b.name\n  memory_size_gb = 1\n}\n\nresource "google_redis_instance" "b" {\n  name           = google_redis_instance.a.name\n  memory_size_gb = 1\n}\n/' \
    'Cycle: '
  expect_broken read_only_role_writes plan envs/dev ../../stack/main.tf 's/("bigquery\.datasets\.getIamPolicy",)/$1 "bigquery.tables.update",/' \
    'A read_only role may only hold get, list, getIamPolicy or getMetadata permissions.'
  # Deployed by digest, not by tag: a version tag for the fintrail image is refused.
  expect_broken image_by_tag plan envs/dev terraform.tfvars 's/fintrail\@sha256:0{64}/fintrail:0.1.0/' \
    'Deployed by digest, not by tag: images.fintrail must be'
  expect_broken for_each_unknown_until_apply plan envs/dev ../../stack/main.tf 's/\z/\nresource "google_service_account" "probe" {\n  account_id = "fintrail-dev-probe"\n}\n\nresource "google_project_iam_member" "probe" {\n  for_each = toset([google_service_account.probe.unique_id])\n  project  = local.env.project_id\n  role     = "roles\/logging.viewer"\n  member   = "serviceAccount:\${google_service_account.probe.email}"\n}\n/' \
    'Invalid for_each argument'
fi

echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
