#!/bin/sh
# Read-only plan of one environment, run by the Cloud Build plan trigger
# (infra/modules/cloud_build) from infra/envs/<env>. It never locks or writes
# state. When GITHUB_TOKEN and PR_NUMBER are set (the plan step only), the
# plan summary is posted on the pull request.
set -eu

tofu plan -input=false -lock=false -no-color -out=/workspace/plan.tfplan
tofu show -no-color /workspace/plan.tfplan | tail -c 60000 > /workspace/plan.txt

if [ -n "${GITHUB_TOKEN:-}" ] && [ -n "${PR_NUMBER:-}" ] && [ -n "${REPOSITORY:-}" ]; then
  # JSON-escape the plan text (backslash, quote, tab) with sed, join lines with \n.
  {
    printf '{"body": "```\\n'
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' /workspace/plan.txt | awk '{ printf "%s\\n", $0 }'
    printf '```"}'
  } > /workspace/comment.json
  wget -q -O /dev/null \
    --header="Authorization: Bearer ${GITHUB_TOKEN}" \
    --header="Content-Type: application/json" \
    --post-file=/workspace/comment.json \
    "https://api.github.com/repos/${REPOSITORY}/issues/${PR_NUMBER}/comments" || echo "warning: could not post the plan on the pull request" >&2
fi
