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
#   5. the three environments share one main.tf (they differ only in variables)
# Ends with: infra: N passed, M failed
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TERRAFORM="${TERRAFORM:-terraform}"
export TF_IN_AUTOMATION=1
export CHECKPOINT_DISABLE=1
# No CLI config is needed; an empty one silences the missing-file warning.
TF_CLI_CONFIG_FILE="$(mktemp)"
export TF_CLI_CONFIG_FILE
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR" "$TF_CLI_CONFIG_FILE"' EXIT

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

  # Basic roles and service-account keys, anywhere in any .tf file.
  # shellcheck disable=SC2086
  if grep -nHE '(roles/(owner|editor|viewer)([^A-Za-z0-9_.]|$)|google_service_account_key)' $files; then
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
for bad in bad_project_tc bad_basic bad_key; do
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
for module_dir in "$INFRA_DIR"/modules/*/ "$INFRA_DIR"/modules/*/*/ "$INFRA_DIR"/lib/*/ "$INFRA_DIR"/envs/*/; do
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

echo "== environments"
if cmp -s "$INFRA_DIR/envs/dev/main.tf" "$INFRA_DIR/envs/staging/main.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/main.tf" "$INFRA_DIR/envs/prod/main.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/variables.tf" "$INFRA_DIR/envs/prod/variables.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/variables.tf" "$INFRA_DIR/envs/staging/variables.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/versions.tf" "$INFRA_DIR/envs/prod/versions.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/versions.tf" "$INFRA_DIR/envs/staging/versions.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/outputs.tf" "$INFRA_DIR/envs/prod/outputs.tf" &&
  cmp -s "$INFRA_DIR/envs/dev/outputs.tf" "$INFRA_DIR/envs/staging/outputs.tf"; then
  pass "dev, staging and prod share main.tf, variables.tf, outputs.tf and versions.tf (they differ only in terraform.tfvars and backend.hcl)"
else
  fail "environments diverge outside terraform.tfvars / backend.hcl"
fi

for env in dev staging prod; do
  if grep -q "^environment *= *\"$env\"" "$INFRA_DIR/envs/$env/terraform.tfvars" &&
    grep -q "prefix *= *\"envs/$env\"" "$INFRA_DIR/envs/$env/backend.hcl"; then
    pass "envs/$env: tfvars and backend.hcl name the $env environment"
  else
    fail "envs/$env: tfvars or backend.hcl do not match the folder"
  fi
done

echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
