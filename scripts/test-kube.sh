#!/usr/bin/env bash
# The Kubernetes end-to-end suite (npm run test:kube): builds the cluster's binaries (cached after the first
# run), brings the cluster up, runs the kube vitest project against it, and always brings the cluster down,
# checking that nothing it made is left. Prints "kube suite: passed=N failed=N skipped=N" (.ci/run adds them to
# the main suite's) and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

report=.vitest-kube-report.json
rm -f "$report"
failed() { echo "::: FAILED: $*"; echo "kube suite: passed=0 failed=1 skipped=0"; }

bash scripts/kube-cluster.sh build || { failed "building the cluster"; exit 1; }
if ! bash scripts/kube-cluster.sh up; then
  bash scripts/kube-cluster.sh down
  failed "bringing the cluster up"
  exit 1
fi
eval "$(bash scripts/kube-cluster.sh env)"
npx vitest run --root packages/deployer-kube --config vitest.e2e.config.ts --reporter=default --reporter=json --outputFile="$PWD/$report"
status=$?
bash scripts/kube-cluster.sh down || { failed "tearing the cluster down"; exit 1; }

# Nothing of the cluster may be left: its namespace, its state directory, a mount or a process of it.
leftovers=""
ip netns list | grep -qw "${WEAVER_KUBE_NS:-wvkube}" && leftovers="$leftovers namespace"
[ -e "$WEAVER_KUBE_STATE" ] && leftovers="$leftovers $WEAVER_KUBE_STATE"
findmnt -rno TARGET | grep -q "^$WEAVER_KUBE_STATE" && leftovers="$leftovers mounts"
for pid in $(ls /proc | grep -E "^[0-9]+$"); do
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
  case "$cmdline" in *"$WEAVER_KUBE_STATE"*) leftovers="$leftovers process-$pid" ;; esac
done
if [ -n "$leftovers" ]; then failed "left behind:$leftovers"; exit 1; fi

[ -f "$report" ] || { failed "no vitest report was written"; exit 1; }
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
const loadErrors = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length
const failed = r.numFailedTests + loadErrors
console.log(`kube suite: passed=${r.numPassedTests} failed=${failed} skipped=${r.numPendingTests + r.numTodoTests}`)
if (r.numTotalTests === 0) { console.log("no tests ran"); process.exit(1) }
process.exit(failed > 0 ? 1 : 0)
' "$report" || exit 1
exit $status
